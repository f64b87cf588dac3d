package config_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/goodgo/goodgo/platform/config"
)

func TestLoadDatabase(t *testing.T) {
	t.Parallel()
	const own = "postgres://goodgo_order@127.0.0.1:5432/goodgo_order?sslmode=disable"
	for _, tc := range []struct {
		name string
		vars map[string]string
		dev  bool
		want config.Database
		err  string
	}{
		{name: "development: the service's role serves, the local superuser migrates", dev: true,
			want: config.Database{URL: own, MigrateURL: "postgres://postgres@127.0.0.1:5432/goodgo_order?sslmode=disable"}},
		{name: "development: the superuser migrates DATABASE_URL's database, without its password", dev: true,
			vars: map[string]string{"DATABASE_URL": "postgres://goodgo_order:pw@db:5433/orders_test"},
			want: config.Database{URL: "postgres://goodgo_order:pw@db:5433/orders_test", MigrateURL: "postgres://postgres@db:5433/orders_test"}},
		{name: "production: nothing migrates unless told",
			want: config.Database{URL: own}},
		{name: "production: MIGRATE_DATABASE_URL migrates",
			vars: map[string]string{"MIGRATE_DATABASE_URL": "postgresql://owner:pw@db/goodgo_order"},
			want: config.Database{URL: own, MigrateURL: "postgresql://owner:pw@db/goodgo_order"}},
		{name: "a bad MIGRATE_DATABASE_URL is named", dev: true,
			vars: map[string]string{"MIGRATE_DATABASE_URL": "mysql://owner:pw@db/x"},
			err:  "MIGRATE_DATABASE_URL: scheme must be one of postgres, postgresql"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := envOf(tc.vars)
			got := config.LoadDatabase(e, "order", tc.dev)
			if tc.err != "" {
				require.ErrorContains(t, e.Err(), tc.err)
				require.NotContains(t, e.Err().Error(), "pw@")
				return
			}
			require.NoError(t, e.Err())
			require.Equal(t, tc.want, got)
		})
	}
	require.Equal(t, "goodgo_orchestrator", config.RoleName("orchestrator"))
}
