package commonv1

// NewMoney is the wire form of minor units of currency: the one conversion
// the services' gRPC layers and event writers share (their domains hold
// amounts as platform/money.Money, which this module does not import).
func NewMoney(currency string, minor int64) *Money {
	return &Money{CurrencyCode: currency, AmountMinor: minor}
}
