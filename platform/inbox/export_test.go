package inbox

// SetAfterEffect installs a hook run after an event's transaction committed
// and before its offset is committed; when it returns true, Run returns at
// once, as a killed process would stop there.
func SetAfterEffect(c *Consumer, hook func(Event) bool) { c.afterEffect = hook }

// ParkedAAD is the additional data a parked payload is sealed with.
var ParkedAAD = parkedAAD
