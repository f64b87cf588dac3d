package generator

import (
	"fmt"
	"strconv"
	"strings"
	"sync"

	orderv1 "github.com/goodgo/goodgo/proto/goodgo/order/v1"
)

// Kind is a kind of order the generator places, each with the outcome the
// system owes it.
type Kind string

// The kinds of order.
const (
	// KindGood is an order that should be confirmed: catalog SKUs in stock, a card that pays.
	KindGood Kind = "good"
	// KindDecline pays with the test card that the payment service declines.
	KindDecline Kind = "decline"
	// KindOutOfStock asks for more of Config.OutOfStockSKU than there is.
	KindOutOfStock Kind = "oos"
	// KindHot buys one unit of Config.HotSKU: every such order contends for one row.
	KindHot Kind = "hot"
)

// Kinds are the kinds in the order summaries list them.
var Kinds = []Kind{KindGood, KindDecline, KindOutOfStock, KindHot}

// Expected is the terminal status the system owes an order of kind k.
func (k Kind) Expected() orderv1.OrderStatus {
	switch k {
	case KindDecline, KindOutOfStock:
		return orderv1.OrderStatus_ORDER_STATUS_CANCELLED
	default:
		return orderv1.OrderStatus_ORDER_STATUS_CONFIRMED
	}
}

// Mix is how many orders of each kind to place, as weights.
type Mix []Weight

// Weight is one kind's share of a Mix.
type Weight struct {
	Kind   Kind
	Weight int
}

// DefaultMix is the mix of the -mix flag's default.
const DefaultMix = "good=70,decline=10,oos=10,hot=10"

// ParseMix reads "good=70,decline=10,oos=10,hot=10": comma-separated
// kind=weight pairs, weights non-negative integers that need not sum to 100,
// at least one positive. A kind left out gets no orders.
func ParseMix(s string) (Mix, error) {
	var m Mix
	seen := map[Kind]bool{}
	for part := range strings.SplitSeq(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		name, val, ok := strings.Cut(part, "=")
		if !ok {
			return nil, fmt.Errorf("mix: %q: want kind=weight", part)
		}
		k := Kind(strings.TrimSpace(name))
		if !k.valid() {
			return nil, fmt.Errorf("mix: unknown kind %q (good, decline, oos, hot)", k)
		}
		if seen[k] {
			return nil, fmt.Errorf("mix: %q given twice", k)
		}
		seen[k] = true
		w, err := strconv.Atoi(strings.TrimSpace(val))
		if err != nil || w < 0 {
			return nil, fmt.Errorf("mix: %s: weight %q must be a non-negative integer", k, val)
		}
		m = append(m, Weight{Kind: k, Weight: w})
	}
	if m.total() == 0 {
		return nil, fmt.Errorf("mix: %q: at least one weight must be positive", s)
	}
	return m, nil
}

func (k Kind) valid() bool {
	for _, v := range Kinds {
		if k == v {
			return true
		}
	}
	return false
}

func (m Mix) total() int {
	t := 0
	for _, w := range m {
		t += w.Weight
	}
	return t
}

// String is the mix in ParseMix's syntax.
func (m Mix) String() string {
	parts := make([]string, len(m))
	for i, w := range m {
		parts[i] = fmt.Sprintf("%s=%d", w.Kind, w.Weight)
	}
	return strings.Join(parts, ",")
}

// picker hands out kinds in the mix's proportions, interleaved (smooth
// weighted round robin): every run of total(m) picks holds each kind
// exactly its weight times, so even a short run has the mix asked for.
// Safe for concurrent use.
type picker struct {
	mu      sync.Mutex
	mix     Mix
	current []int
	total   int
}

func newPicker(m Mix) *picker {
	return &picker{mix: m, current: make([]int, len(m)), total: m.total()}
}

func (p *picker) next() Kind {
	p.mu.Lock()
	defer p.mu.Unlock()
	best := -1
	for i, w := range p.mix {
		p.current[i] += w.Weight
		if w.Weight > 0 && (best < 0 || p.current[i] > p.current[best]) {
			best = i
		}
	}
	p.current[best] -= p.total
	return p.mix[best].Kind
}

// retried tells whether order i (0-based) is one of the fraction f whose
// placement the generator repeats: exactly ⌊n·f⌋ of the first n orders,
// spread evenly.
func retried(i int, f float64) bool {
	return int(float64(i+1)*f) > int(float64(i)*f)
}
