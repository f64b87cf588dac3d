package checkout_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/goodgo/goodgo/platform/caller"
	"github.com/goodgo/goodgo/platform/saga"
	"github.com/goodgo/goodgo/services/orchestrator/internal/checkout"
)

// fakes answer every call with what the test set and record it, with whom
// the call acted for.
type fakes struct {
	payment     checkout.Payment
	reservation checkout.Reservation
	err         error
	calls       []string
	actors      []caller.Delegation
}

func (f *fakes) record(ctx context.Context, call string) {
	f.calls = append(f.calls, call)
	d, _ := caller.DelegationFrom(ctx)
	f.actors = append(f.actors, d)
}

func (f *fakes) Charge(ctx context.Context, key string, o checkout.Order) (checkout.Payment, error) {
	f.record(ctx, "charge "+key+" "+o.PaymentMethod)
	return f.payment, f.err
}
func (f *fakes) Refund(ctx context.Context, key, orderID, reason string) error {
	f.record(ctx, "refund "+key+" "+reason)
	return f.err
}
func (f *fakes) Reserve(ctx context.Context, key, orderID string, items []checkout.Item) (checkout.Reservation, error) {
	f.record(ctx, "reserve "+key)
	return f.reservation, f.err
}
func (f *fakes) Release(ctx context.Context, key, orderID string) error {
	f.record(ctx, "release "+key)
	return f.err
}
func (f *fakes) Confirm(ctx context.Context, key, orderID string) error {
	f.record(ctx, "confirm "+key)
	return f.err
}
func (f *fakes) Cancel(ctx context.Context, key, orderID, reason string) error {
	f.record(ctx, "cancel "+key+" "+reason)
	return f.err
}

func validOrder() checkout.Order {
	return checkout.Order{OrderID: uuid.NewString(), AmountMinor: 100, Currency: "USD", PaymentMethod: "tok_visa",
		Items: []checkout.Item{{SKU: "A", Quantity: 1}}, PlacedBy: "alice"}
}

func TestDefinitionShape(t *testing.T) {
	def := checkout.Definition(&fakes{}, &fakes{}, &fakes{})
	var names []string
	for _, g := range def.Steps {
		require.Len(t, g, 1, "the order saga is sequential")
		names = append(names, g[0].Name)
	}
	require.Equal(t, []string{"order", "payment", "inventory", "confirm"}, names)
	require.Nil(t, def.Steps[0][0].Action, "the order exists before the saga")
	require.NotNil(t, def.Steps[0][0].Compensate, "cancelling it is the saga's last undo")
	require.True(t, def.Steps[3][0].Pivot)
	require.Nil(t, def.Steps[3][0].Compensate)
}

func TestStepsMapBusinessOutcomes(t *testing.T) {
	o := validOrder()
	data, err := o.Marshal()
	require.NoError(t, err)
	x := func(step string, phase saga.Phase) *saga.Execution {
		return &saga.Execution{SagaID: uuid.New(), Step: step, Phase: phase, Data: data, FailureReason: "payment: payment declined: card_declined"}
	}
	step := func(def *saga.Definition, i int) saga.Step { return def.Steps[i][0] }

	f := &fakes{payment: checkout.Payment{Declined: true, Reason: "card_declined"}}
	def := checkout.Definition(f, f, f)
	err = step(def, 1).Action(context.Background(), x("payment", saga.PhaseAction))
	require.True(t, saga.IsPermanent(err), "a decline compensates at once")
	require.ErrorIs(t, err, checkout.ErrPaymentDeclined)

	f = &fakes{reservation: checkout.Reservation{Rejected: true, Reason: "insufficient_stock"}}
	def = checkout.Definition(f, f, f)
	err = step(def, 2).Action(context.Background(), x("inventory", saga.PhaseAction))
	require.True(t, saga.IsPermanent(err))
	require.ErrorIs(t, err, checkout.ErrInsufficientStock)

	transient := errors.New("unavailable")
	f = &fakes{err: transient}
	def = checkout.Definition(f, f, f)
	err = step(def, 1).Action(context.Background(), x("payment", saga.PhaseAction))
	require.ErrorIs(t, err, transient)
	require.False(t, saga.IsPermanent(err), "the adapter's classification is kept")

	f = &fakes{}
	def = checkout.Definition(f, f, f)
	ex := x("order", saga.PhaseCompensation)
	require.NoError(t, step(def, 0).Compensate(context.Background(), ex))
	require.Equal(t, []string{"cancel saga:" + ex.SagaID.String() + ":order:compensate payment declined (card_declined)"}, f.calls)

	err = step(def, 1).Action(context.Background(), &saga.Execution{Step: "payment", Data: []byte("not json")})
	require.True(t, saga.IsPermanent(err), "an unreadable context will not get better")
}

// The customer reads the reason (GetOrder's cancel_reason): internal error
// text never goes out, only a fixed vocabulary or an operator's own words.
func TestReasonNeverLeaksInternalText(t *testing.T) {
	for failure, want := range map[string]string{
		"payment: payment declined: card_declined":          "payment declined (card_declined)",
		"payment: payment declined: amount_limit":           "payment declined (amount_limit)",
		"payment: payment declined: <script>":               "payment declined",
		"inventory: insufficient stock: insufficient_stock": "insufficient stock",
		"saga deadline exceeded":                            "the order could not be completed in time",
		"payment: ProcessPayment: rpc error: code = Unavailable desc = dial tcp 127.0.0.1:41049: connect: connection refused (after 3 attempts)": "the order could not be completed",
		"": "the order could not be completed",
		checkout.AbortPrefix + "alice: fraud suspected": checkout.AbortPrefix + "alice: fraud suspected",
		checkout.AbortPrefix + "bob: a\nb":              checkout.AbortPrefix + "bob: a b",
	} {
		require.Equal(t, want, checkout.Reason(failure), failure)
	}
	long := checkout.Reason(checkout.AbortPrefix + strings.Repeat("é", 1000))
	require.Equal(t, 200, utf8.RuneCountInString(long))
	require.Equal(t, long, checkout.Reason(checkout.AbortPrefix+strings.Repeat("é", 1000)), "the same failure gives the same reason")
}

func TestAuthorizer(t *testing.T) {
	a := checkout.Authorizer{Deny: map[string]bool{"mallory": true}}
	exec := func(t *testing.T, startedBy string, mutate func(*checkout.Order)) *saga.Execution {
		o := validOrder()
		o.PlacedBy, o.Permissions = startedBy, checkout.Permissions
		if mutate != nil {
			mutate(&o)
		}
		data, err := o.Marshal()
		require.NoError(t, err)
		return &saga.Execution{StartedBy: startedBy, Data: data}
	}
	require.NoError(t, a.Authorize(context.Background(), exec(t, "alice", nil)))
	require.NoError(t, a.Authorize(context.Background(), exec(t, "alice", func(o *checkout.Order) { o.Permissions = nil })),
		"a saga started before permissions were recorded acts with the saga's")
	for name, x := range map[string]*saga.Execution{
		"started by nobody":          exec(t, "", nil),
		"blank":                      exec(t, " ", nil),
		"a blocked user":             exec(t, "mallory", nil),
		"not the order's user":       exec(t, "alice", func(o *checkout.Order) { o.PlacedBy = "bob" }),
		"without the permission":     exec(t, "alice", func(o *checkout.Order) { o.Permissions = []string{"orders.read"} }),
		"an unreadable saga context": {StartedBy: "alice", Data: []byte("{")},
	} {
		require.Error(t, a.Authorize(context.Background(), x), name)
	}
	require.ErrorIs(t, a.Authorize(context.Background(), exec(t, "mallory", nil)), checkout.ErrNotAllowed)
}

func TestEveryStepActsForTheOrdersUser(t *testing.T) {
	o := validOrder()
	data, err := o.Marshal()
	require.NoError(t, err)
	f := &fakes{}
	def := checkout.Definition(f, f, f)
	for _, g := range def.Steps {
		for _, st := range g {
			for phase, fn := range map[saga.Phase]saga.Func{saga.PhaseAction: st.Action, saga.PhaseCompensation: st.Compensate} {
				if fn != nil {
					require.NoError(t, fn(context.Background(), &saga.Execution{SagaID: uuid.New(), Step: st.Name, Phase: phase, Data: data}))
				}
			}
		}
	}
	require.Len(t, f.actors, 6, "charge, refund, reserve, release, confirm, cancel")
	for i, d := range f.actors {
		require.Equal(t, caller.Delegation{User: "alice", Permissions: checkout.Permissions}, d, f.calls[i])
	}
}

func TestOrderValidate(t *testing.T) {
	require.NoError(t, validOrder().Validate())
	for name, mutate := range map[string]func(*checkout.Order){
		"no id":        func(o *checkout.Order) { o.OrderID = "" },
		"no currency":  func(o *checkout.Order) { o.Currency = "" },
		"no items":     func(o *checkout.Order) { o.Items = nil },
		"bad quantity": func(o *checkout.Order) { o.Items[0].Quantity = 0 },
		"negative":     func(o *checkout.Order) { o.AmountMinor = -1 },
	} {
		o := validOrder()
		mutate(&o)
		require.ErrorIs(t, o.Validate(), checkout.ErrInvalidOrder, name)
	}
}
