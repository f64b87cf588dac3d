package inbox

import (
	"testing"

	"github.com/google/uuid"
	"github.com/segmentio/kafka-go"

	"github.com/goodgo/goodgo/platform/event"
)

// FuzzDecode feeds arbitrary envelope headers to the inbox's decoder. It
// never panics; every event gets an id, the same one on redelivery (so a
// redelivered bad event is parked once); and an event accepted without
// error has every header a consumer relies on.
func FuzzDecode(f *testing.F) {
	f.Add("0f8fad5b-d9cb-469f-a165-70867728950e", "order.created.v1", "order", "o-1", "1", "2026-12-02T04:00:00Z", []byte("key"))
	f.Add("", "", "", "", "x", "yesterday", []byte(nil))
	f.Add("not-a-uuid", "order.created.v1", "order", "", "-9223372036854775808", "2026-12-02T04:00:00.123456789+01:00", []byte("k"))
	f.Add("00000000-0000-0000-0000-000000000000", "t", "a", "i", "99999999999999999999", "2026-13-40T99:00:00Z", []byte{0xff})
	f.Fuzz(func(t *testing.T, id, typ, aggType, aggID, version, occurred string, key []byte) {
		m := kafka.Message{Topic: "goodgo.order.events", Partition: 2, Offset: 42, Key: key, Value: []byte("payload"), Headers: []kafka.Header{
			{Key: event.HeaderEventID, Value: []byte(id)},
			{Key: event.HeaderEventType, Value: []byte(typ)},
			{Key: event.HeaderAggregateType, Value: []byte(aggType)},
			{Key: event.HeaderAggregateID, Value: []byte(aggID)},
			{Key: event.HeaderAggregateVersion, Value: []byte(version)},
			{Key: event.HeaderOccurredAt, Value: []byte(occurred)},
		}}
		ev, err := decode(m)
		if ev.ID == uuid.Nil {
			t.Fatal("decoded event without an id")
		}
		again, _ := decode(m)
		if again.ID != ev.ID {
			t.Fatalf("redelivery decodes to another id: %s then %s", ev.ID, again.ID)
		}
		if err == nil {
			parsed, perr := uuid.Parse(id)
			if perr != nil || parsed != ev.ID || ev.Type == "" || ev.AggregateType == "" || ev.AggregateID == "" {
				t.Fatalf("accepted an incomplete envelope: %+v", ev)
			}
		}
		if string(ev.Payload) != "payload" || ev.Offset != 42 || ev.Partition != 2 {
			t.Fatalf("position or payload lost: %+v", ev)
		}
	})
}
