package postgres

import (
	"context"
	"fmt"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"
)

// AfterConnect prepares every new connection of a pool of this repository:
// Connect's pools use it, and a pool configured elsewhere (the relay's,
// the tests') sets it as its pgxpool.Config.AfterConnect.
func AfterConnect(_ context.Context, c *pgx.Conn) error {
	RegisterUUID(c.TypeMap())
	return nil
}

// RegisterUUID makes m encode and decode github.com/google/uuid's UUID, the
// type sqlc generates for uuid columns, as the sixteen bytes it is.
// uuid.UUID implements driver.Valuer and sql.Scanner, which pgx honours
// before anything else: without this, every uuid parameter was formatted
// as text and parsed back, and every uuid column formatted as text and
// parsed into the UUID (about 5 % of the order, payment and orchestrator
// CPU in BenchmarkOrderSaga). uuid[] (of uuid.UUID elements) goes the same
// way. Every other Go type keeps pgx's handling.
func RegisterUUID(m *pgtype.Map) {
	elem := &pgtype.Type{Name: "uuid", OID: pgtype.UUIDOID, Codec: uuidCodec{}}
	m.RegisterType(elem)
	m.RegisterType(&pgtype.Type{Name: "_uuid", OID: pgtype.UUIDArrayOID, Codec: &pgtype.ArrayCodec{ElementType: elem}})
}

// uuidCodec is pgtype.UUIDCodec with binary plans for uuid.UUID.
type uuidCodec struct{ pgtype.UUIDCodec }

func (c uuidCodec) PlanEncode(m *pgtype.Map, oid uint32, format int16, value any) pgtype.EncodePlan {
	if _, ok := value.(uuid.UUID); ok && format == pgtype.BinaryFormatCode {
		return encodeUUID{}
	}
	return c.UUIDCodec.PlanEncode(m, oid, format, value)
}

func (c uuidCodec) PlanScan(m *pgtype.Map, oid uint32, format int16, target any) pgtype.ScanPlan {
	if _, ok := target.(*uuid.UUID); ok && format == pgtype.BinaryFormatCode {
		return scanUUID{}
	}
	return c.UUIDCodec.PlanScan(m, oid, format, target)
}

type encodeUUID struct{}

func (encodeUUID) Encode(value any, buf []byte) ([]byte, error) {
	u := value.(uuid.UUID)
	return append(buf, u[:]...), nil
}

type scanUUID struct{}

func (scanUUID) Scan(src []byte, dst any) error {
	if src == nil {
		return fmt.Errorf("postgres: cannot scan NULL into %T", dst)
	}
	if len(src) != len(uuid.UUID{}) {
		return fmt.Errorf("postgres: a binary uuid has 16 bytes, not %d", len(src))
	}
	copy(dst.(*uuid.UUID)[:], src)
	return nil
}
