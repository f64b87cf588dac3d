package main

import (
	"bytes"
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/goodgo/goodgo/platform/config"
	"github.com/goodgo/goodgo/platform/mtls"
	"github.com/goodgo/goodgo/platform/security"
	"github.com/goodgo/goodgo/platform/token"
)

func TestDevInitThenTokenWorkForTheBinaries(t *testing.T) {
	dir := t.TempDir()
	var out, errOut bytes.Buffer
	require.NoError(t, run([]string{"dev", "init", "-dir", dir, "-host", "order.goodgo.svc"}, &out, &errOut))
	p := config.DevPaths{Dir: dir}

	for _, svc := range security.Services {
		src, err := mtls.Load(mtls.Files{Cert: p.Cert(svc), Key: p.Key(svc), CA: p.CA()}, nil)
		require.NoError(t, err, svc)
		require.Equal(t, svc, src.Service())
		_, leaf := src.Certificate()
		require.Contains(t, leaf.DNSNames, "order.goodgo.svc")
		require.Contains(t, leaf.DNSNames, svc)
	}
	info, err := os.Stat(p.Key("order"))
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o600), info.Mode().Perm(), "private keys are the owner's only")

	out.Reset()
	require.NoError(t, run([]string{"dev", "token", "-dir", dir, "-sub", "ops-1", "-roles", "operator", "-ttl", "5m"}, &out, &errOut))
	v, err := token.NewVerifier(context.Background(), token.Config{
		Issuer: config.DevIssuer, Audience: config.DevAudience, JWKSFile: p.JWKS(),
	})
	require.NoError(t, err)
	tok := strings.TrimSpace(out.String())
	claims, err := v.Verify(context.Background(), tok)
	require.NoError(t, err)
	require.Equal(t, "ops-1", claims.Subject)
	require.Equal(t, []string{"operator"}, claims.Roles)
	require.WithinDuration(t, time.Now().Add(5*time.Minute), claims.Expires, time.Minute)

	// Running init again renews the certificates but keeps the CA and the
	// issuer: tokens minted before stay valid.
	ca, err := os.ReadFile(p.CA())
	require.NoError(t, err)
	cert, err := os.ReadFile(p.Cert("order"))
	require.NoError(t, err)
	require.NoError(t, run([]string{"dev", "init", "-dir", dir}, &out, &errOut))
	ca2, _ := os.ReadFile(p.CA())
	cert2, _ := os.ReadFile(p.Cert("order"))
	require.Equal(t, ca, ca2)
	require.NotEqual(t, cert, cert2)
	_, err = v.Verify(context.Background(), tok)
	require.NoError(t, err, "a token minted before is still valid")

	out.Reset()
	require.NoError(t, run([]string{"dev", "ca", "-dir", dir}, &out, &errOut))
	require.Equal(t, string(ca), out.String(), "the CA for clients (grpcurl -cacert)")
}

func TestBadUsageIsExplained(t *testing.T) {
	var out, errOut bytes.Buffer
	for _, args := range [][]string{nil, {"dev"}, {"prod", "init"}, {"dev", "token"}, {"dev", "token", "-sub", "x", "-roles", "root"}} {
		err := run(args, &out, &errOut)
		require.Error(t, err, "%v", args)
	}
	err := run([]string{"dev", "token", "-dir", t.TempDir(), "-sub", "x"}, &out, &errOut)
	require.ErrorContains(t, err, "goodgoctl dev init")
}

func TestKeysNewPrintsAKeyTheBinariesTake(t *testing.T) {
	var out, errOut bytes.Buffer
	require.NoError(t, run([]string{"keys", "new", "-id", "pii-2027q1"}, &out, &errOut))
	entry := strings.TrimSpace(out.String())
	require.True(t, strings.HasPrefix(entry, "pii-2027q1:"), entry)

	e := config.NewEnv(func(k string) (string, bool) { return entry, k == config.PIIKeys.Keys })
	kr := e.Keyring(config.PIIKeys, false)
	require.NoError(t, e.Err(), "production mode accepts it")
	require.Equal(t, "pii-2027q1", kr.ActiveKeyID())

	out.Reset()
	require.NoError(t, run([]string{"keys", "new"}, &out, &errOut))
	require.NotEqual(t, entry[len("pii-2027q1:"):], strings.TrimSpace(out.String())[len("k20261202:"):], "fresh each time")

	require.Error(t, run([]string{"keys", "new", "-id", "bad id"}, &out, &errOut))
}
