package e2e

import (
	"context"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/goodgo/goodgo/platform/event"
	"github.com/goodgo/goodgo/platform/inbox"
)

// kafkaEvent is one message of a topic, by its envelope headers.
type kafkaEvent struct {
	Topic      string
	Partition  int
	Offset     int64
	Key        string
	ID         string
	Type       string
	OccurredAt time.Time
}

func decodeEvent(m kafka.Message) kafkaEvent {
	ev := kafkaEvent{Topic: m.Topic, Partition: m.Partition, Offset: m.Offset, Key: string(m.Key)}
	for _, h := range m.Headers {
		switch h.Key {
		case event.HeaderEventID:
			ev.ID = string(h.Value)
		case event.HeaderEventType:
			ev.Type = string(h.Value)
		case event.HeaderOccurredAt:
			ev.OccurredAt, _ = time.Parse(time.RFC3339Nano, string(h.Value))
		}
	}
	return ev
}

// partitions lists the partition ids of topic.
func partitions(ctx context.Context, brokerAddr, topic string) ([]int, error) {
	conn, err := (&kafka.Dialer{Timeout: 5 * time.Second}).DialContext(ctx, "tcp", brokerAddr)
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", brokerAddr, err)
	}
	defer conn.Close()
	ps, err := conn.ReadPartitions(topic)
	if err != nil {
		return nil, fmt.Errorf("partitions of %s: %w", topic, err)
	}
	ids := make([]int, len(ps))
	for i, p := range ps {
		ids[i] = p.ID
	}
	return ids, nil
}

// offsets returns the first and the next offset of one partition.
func offsets(ctx context.Context, brokerAddr, topic string, partition int) (first, last int64, err error) {
	conn, err := (&kafka.Dialer{Timeout: 5 * time.Second}).DialLeader(ctx, "tcp", brokerAddr, topic, partition)
	if err != nil {
		return 0, 0, fmt.Errorf("dial leader %s/%d: %w", topic, partition, err)
	}
	defer conn.Close()
	first, last, err = conn.ReadOffsets()
	if err != nil {
		return 0, 0, fmt.Errorf("offsets of %s/%d: %w", topic, partition, err)
	}
	return first, last, nil
}

// readTopic returns every message of topic (all partitions, from the first
// offset to the high watermark read when it starts), decoded.
func readTopic(ctx context.Context, brokerAddr, topic string) ([]kafkaEvent, error) {
	ids, err := partitions(ctx, brokerAddr, topic)
	if err != nil {
		return nil, err
	}
	var out []kafkaEvent
	for _, p := range ids {
		first, last, err := offsets(ctx, brokerAddr, topic, p)
		if err != nil {
			return nil, err
		}
		if last <= first {
			continue
		}
		r := kafka.NewReader(kafka.ReaderConfig{
			Brokers: []string{brokerAddr}, Topic: topic, Partition: p,
			MinBytes: 1, MaxBytes: 16 << 20, MaxWait: 100 * time.Millisecond,
		})
		if err := r.SetOffset(first); err != nil {
			_ = r.Close()
			return nil, err
		}
		for {
			m, err := r.ReadMessage(ctx)
			if err != nil {
				_ = r.Close()
				return nil, fmt.Errorf("read %s/%d at %d of [%d, %d): %w", topic, p, r.Offset(), first, last, err)
			}
			out = append(out, decodeEvent(m))
			if m.Offset >= last-1 {
				break
			}
		}
		if err := r.Close(); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// tailTopic delivers, until ctx ends, every message appended to topic after
// it starts, one reader per partition (no consumer group: nothing to join
// or rebalance). It returns once every reader is positioned.
func tailTopic(ctx context.Context, brokerAddr, topic string, deliver func(kafkaEvent)) error {
	ids, err := partitions(ctx, brokerAddr, topic)
	if err != nil {
		return err
	}
	for _, p := range ids {
		_, last, err := offsets(ctx, brokerAddr, topic, p)
		if err != nil {
			return err
		}
		// The services' MaxWait: a shorter one makes kafka-go dial again
		// whenever the busy broker answers an empty fetch late (see
		// inbox.DefaultMaxWait), which BenchmarkOrderSaga would count.
		r := kafka.NewReader(kafka.ReaderConfig{
			Brokers: []string{brokerAddr}, Topic: topic, Partition: p,
			MinBytes: 1, MaxBytes: 16 << 20, MaxWait: inbox.DefaultMaxWait,
		})
		if err := r.SetOffset(last); err != nil {
			_ = r.Close()
			return err
		}
		go func() {
			defer r.Close()
			for {
				m, err := r.ReadMessage(ctx)
				if err != nil {
					if ctx.Err() == nil && !errors.Is(err, net.ErrClosed) {
						deliver(kafkaEvent{Topic: topic, Partition: p, Offset: -1, ID: "error: " + err.Error()})
					}
					return
				}
				deliver(decodeEvent(m))
			}
		}()
	}
	return nil
}
