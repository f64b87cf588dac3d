-- The customer a payment is for: the user the order saga acted for when it
-- charged (or voided) it, from the orchestrator's verified on-behalf-of
-- assertion. GetPayment shows a payment to that customer and to operators
-- only. Payments from before this column name no customer: operators only.
ALTER TABLE payments ADD COLUMN customer_id TEXT NOT NULL DEFAULT '';
