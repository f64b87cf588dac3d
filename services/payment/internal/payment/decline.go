package payment

// Decline reasons, as stored and returned in Payment.DeclineReason.
const (
	// ReasonCardDeclined: the payment method is the always-declined test card.
	ReasonCardDeclined = "card_declined"
	// ReasonAmountLimit: the amount is above the configured limit.
	ReasonAmountLimit = "amount_limit"
)

// TestCardDecline is the payment method that is always declined, so that a
// client (the e2e suite, a demo) can produce a failed payment on demand.
const TestCardDecline = "tok_decline"

// DefaultDeclineAboveMinor is the default amount limit in minor units.
const DefaultDeclineAboveMinor = 1_000_000

// DeclineRules decide whether a payment attempt is declined. This service
// has no card network behind it; the rules stand in for one and make every
// outcome reproducible.
type DeclineRules struct {
	// AboveMinor declines every amount strictly greater than it, in minor
	// units of whatever currency (the rule is a test lever, not an FX
	// policy). Zero or less disables the limit.
	AboveMinor int64
}

// Decide returns the decline reason for an attempt to pay amount with
// method, or "" when the payment is captured. The test card wins over the
// amount limit, so "tok_decline" always reads "card_declined".
func (r DeclineRules) Decide(method string, amount Money) string {
	switch {
	case method == TestCardDecline:
		return ReasonCardDeclined
	case r.AboveMinor > 0 && amount.Minor > r.AboveMinor:
		return ReasonAmountLimit
	default:
		return ""
	}
}
