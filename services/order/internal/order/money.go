package order

import "github.com/goodgo/goodgo/platform/money"

// Money is an amount in the currency's minor unit. Amounts in this system
// are never negative.
type Money = money.Money
