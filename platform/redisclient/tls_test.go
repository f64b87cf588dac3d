package redisclient_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/goodgo/goodgo/platform/config"
	"github.com/goodgo/goodgo/platform/mtls"
	"github.com/goodgo/goodgo/platform/redisclient"
	"github.com/goodgo/goodgo/platform/servicetest"
)

// tlsRedis is a private redis-server of one test that speaks only TLS
// (--port 0), with a certificate for 127.0.0.1 from a test CA.
type tlsRedis struct {
	Addr   string
	CA     *mtls.CA
	CAFile string
	Dir    string
}

// URL is the rediss:// URL of the server, as host (127.0.0.1 when empty).
func (s *tlsRedis) URL(host string) string {
	_, port, _ := net.SplitHostPort(s.Addr)
	if host == "" {
		host = "127.0.0.1"
	}
	return "rediss://" + net.JoinHostPort(host, port) + "/0"
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer func() { _ = l.Close() }()
	return l.Addr().(*net.TCPAddr).Port
}

// startTLSRedis starts redis-server with TLS only and extra arguments
// (given port, the TLS port, and the test's directory), waits until it
// answers PING over TLS and stops it when the test ends. It skips the test
// when redis-server is not installed.
func startTLSRedis(t *testing.T, extra func(port int, dir string) []string) *tlsRedis {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		t.Skipf("redis-server not installed: %v", err)
	}
	dir := t.TempDir()
	ca, err := mtls.NewCA("redis test CA", time.Hour)
	require.NoError(t, err)
	server, err := ca.Issue("redis", []string{"127.0.0.1"}, time.Hour)
	require.NoError(t, err)
	s := &tlsRedis{CA: ca, CAFile: filepath.Join(dir, "ca.crt"), Dir: dir}
	require.NoError(t, server.WriteFiles(filepath.Join(dir, "redis.crt"), filepath.Join(dir, "redis.key")))
	require.NoError(t, os.WriteFile(s.CAFile, ca.PEM, 0o600))
	roots := x509.NewCertPool()
	roots.AddCert(ca.Cert)

	// A free port may be taken before redis-server binds it: try another.
	for attempt := 1; ; attempt++ {
		port := freePort(t)
		args := []string{
			"--port", "0", "--bind", "127.0.0.1", "--tls-port", strconv.Itoa(port),
			"--tls-cert-file", filepath.Join(dir, "redis.crt"), "--tls-key-file", filepath.Join(dir, "redis.key"),
			"--tls-ca-cert-file", s.CAFile, "--tls-auth-clients", "no",
			"--save", "", "--appendonly", "no", "--dir", dir,
		}
		if extra != nil {
			args = append(args, extra(port, dir)...)
		}
		var out servicetest.Logs
		cmd := exec.Command(bin, args...)
		cmd.Stdout, cmd.Stderr = &out, &out
		require.NoError(t, cmd.Start())
		exited := make(chan struct{})
		go func() { _ = cmd.Wait(); close(exited) }()
		stop := func() {
			_ = cmd.Process.Kill()
			<-exited
		}

		s.Addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
		// The server must answer over TLS with its certificate: the
		// readiness probe trusts the CA but any client certificate
		// requirement is the test's to meet, so only the handshake is
		// awaited.
		probe := &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}
		if ready(s.Addr, probe, exited) {
			t.Cleanup(stop)
			return s
		}
		stop()
		if attempt == 3 || !strings.Contains(out.String(), "Address already in use") {
			t.Fatalf("redis-server %s did not start:\n%s", strings.Join(args, " "), out.String())
		}
	}
}

// ready polls addr until a TLS handshake succeeds, the server exits, or 10 s
// pass.
func ready(addr string, cfg *tls.Config, exited <-chan struct{}) bool {
	deadline := time.After(10 * time.Second)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		d := tls.Dialer{NetDialer: &net.Dialer{Timeout: time.Second}, Config: cfg}
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		conn, err := d.DialContext(ctx, "tcp", addr)
		cancel()
		if err == nil {
			_ = conn.Close()
			return true
		}
		select {
		case <-exited:
			return false
		case <-deadline:
			return false
		case <-tick.C:
		}
	}
}

func requireSetGet(t *testing.T, client redis.UniversalClient) {
	t.Helper()
	key := "test:redisclient:" + t.Name()
	require.NoError(t, client.Set(t.Context(), key, "v", time.Minute).Err())
	got, err := client.Get(t.Context(), key).Result()
	require.NoError(t, err)
	require.Equal(t, "v", got)
}

func TestConnectOverTLS(t *testing.T) {
	t.Parallel()
	srv := startTLSRedis(t, nil)

	t.Run("with REDIS_CA_FILE the server is trusted", func(t *testing.T) {
		t.Parallel()
		client, err := redisclient.Connect(t.Context(), config.Redis{URL: srv.URL(""), CAFile: srv.CAFile}, nil, 5*time.Second)
		require.NoError(t, err)
		t.Cleanup(func() { _ = client.Close() })
		require.IsType(t, &redis.Client{}, client)
		requireSetGet(t, client)
	})

	t.Run("without the CA the server is untrusted, at once", func(t *testing.T) {
		t.Parallel()
		start := time.Now()
		client, err := redisclient.Connect(t.Context(), config.Redis{URL: srv.URL("")}, nil, 5*time.Second)
		require.Nil(t, client)
		var unknown x509.UnknownAuthorityError
		require.ErrorAs(t, err, &unknown)
		require.ErrorContains(t, err, "redis at "+srv.Addr+": TLS:")
		require.Less(t, time.Since(start), 3*time.Second, "not retried")
	})

	t.Run("a certificate for another host name is refused", func(t *testing.T) {
		t.Parallel()
		// The certificate names 127.0.0.1 only; localhost is the same server.
		client, err := redisclient.Connect(t.Context(), config.Redis{URL: srv.URL("localhost"), CAFile: srv.CAFile}, nil, 5*time.Second)
		require.Nil(t, client)
		var hostname x509.HostnameError
		require.ErrorAs(t, err, &hostname)
	})

	t.Run("REDIS_TLS_SERVER_NAME is the name checked", func(t *testing.T) {
		t.Parallel()
		client, err := redisclient.Connect(t.Context(),
			config.Redis{URL: srv.URL("localhost"), CAFile: srv.CAFile, ServerName: "127.0.0.1"}, nil, 5*time.Second)
		require.NoError(t, err)
		t.Cleanup(func() { _ = client.Close() })
		requireSetGet(t, client)
	})

	t.Run("a plaintext client cannot talk to the TLS port", func(t *testing.T) {
		t.Parallel()
		client, err := redisclient.Connect(t.Context(), config.Redis{URL: "redis://" + srv.Addr + "/0"}, nil, time.Second)
		require.Nil(t, client)
		require.ErrorContains(t, err, "redis at "+srv.Addr+" unreachable after 1s")
	})
}

func TestConnectOverMutualTLS(t *testing.T) {
	t.Parallel()
	srv := startTLSRedis(t, func(int, string) []string { return []string{"--tls-auth-clients", "yes"} })
	dir := t.TempDir()
	client, err := srv.CA.Issue("order", nil, time.Hour)
	require.NoError(t, err)
	certFile, keyFile := filepath.Join(dir, "order.crt"), filepath.Join(dir, "order.key")
	require.NoError(t, client.WriteFiles(certFile, keyFile))

	t.Run("a client certificate of the server's CA is accepted", func(t *testing.T) {
		t.Parallel()
		cfg := config.Redis{URL: srv.URL(""), CAFile: srv.CAFile, CertFile: certFile, KeyFile: keyFile}
		rdb, err := redisclient.Connect(t.Context(), cfg, nil, 5*time.Second)
		require.NoError(t, err)
		t.Cleanup(func() { _ = rdb.Close() })
		requireSetGet(t, rdb)
	})

	t.Run("without a client certificate the server refuses", func(t *testing.T) {
		t.Parallel()
		rdb, err := redisclient.Connect(t.Context(), config.Redis{URL: srv.URL(""), CAFile: srv.CAFile}, nil, time.Second)
		require.Nil(t, rdb)
		require.ErrorContains(t, err, "unreachable after 1s")
	})

	t.Run("a client certificate of another CA is refused", func(t *testing.T) {
		t.Parallel()
		other, err := mtls.NewCA("another CA", time.Hour)
		require.NoError(t, err)
		issued, err := other.Issue("order", nil, time.Hour)
		require.NoError(t, err)
		dir := t.TempDir()
		require.NoError(t, issued.WriteFiles(filepath.Join(dir, "c.crt"), filepath.Join(dir, "c.key")))
		cfg := config.Redis{URL: srv.URL(""), CAFile: srv.CAFile, CertFile: filepath.Join(dir, "c.crt"), KeyFile: filepath.Join(dir, "c.key")}
		rdb, err := redisclient.Connect(t.Context(), cfg, nil, time.Second)
		require.Nil(t, rdb)
		require.ErrorContains(t, err, "unreachable after 1s")
	})
}

func TestConnectToClusterOverTLS(t *testing.T) {
	t.Parallel()
	srv := startTLSRedis(t, func(port int, dir string) []string {
		return []string{
			"--cluster-enabled", "yes", "--tls-cluster", "yes",
			"--cluster-config-file", filepath.Join(dir, "nodes.conf"),
			"--cluster-port", strconv.Itoa(freePort(t)),
			"--cluster-announce-ip", "127.0.0.1",
		}
	})
	// One node serving every slot: a cluster as far as clients can tell.
	roots := x509.NewCertPool()
	roots.AddCert(srv.CA.Cert)
	node := redis.NewClient(&redis.Options{Addr: srv.Addr, TLSConfig: &tls.Config{RootCAs: roots, ServerName: "127.0.0.1", MinVersion: tls.VersionTLS12}})
	t.Cleanup(func() { _ = node.Close() })
	require.NoError(t, node.Do(t.Context(), "CLUSTER", "ADDSLOTSRANGE", "0", "16383").Err())
	require.Eventually(t, func() bool {
		info, err := node.ClusterInfo(t.Context()).Result()
		return err == nil && strings.Contains(info, "cluster_state:ok")
	}, 10*time.Second, 20*time.Millisecond, "cluster_state:ok")

	t.Run("REDIS_ADDRS with a rediss:// REDIS_URL and REDIS_CA_FILE", func(t *testing.T) {
		t.Parallel()
		// The URL's host is not a node: a cluster client checks each
		// node's certificate against the node's own address.
		cfg := config.Redis{URL: "rediss://cluster.invalid:6379", Addrs: []string{srv.Addr}, CAFile: srv.CAFile}
		client, err := redisclient.Connect(t.Context(), cfg, nil, 5*time.Second)
		require.NoError(t, err)
		t.Cleanup(func() { _ = client.Close() })
		require.IsType(t, &redis.ClusterClient{}, client)
		for i := range 20 { // keys across many slots
			key := fmt.Sprintf("test:redisclient:cluster:%d", i)
			require.NoError(t, client.Set(t.Context(), key, i, time.Minute).Err())
			got, err := client.Get(t.Context(), key).Int()
			require.NoError(t, err)
			require.Equal(t, i, got)
		}
	})

	t.Run("without the CA the cluster is untrusted", func(t *testing.T) {
		t.Parallel()
		client, err := redisclient.Connect(t.Context(), config.Redis{URL: "rediss://", Addrs: []string{srv.Addr}}, nil, 5*time.Second)
		require.Nil(t, client)
		var unknown x509.UnknownAuthorityError
		require.ErrorAs(t, err, &unknown)
	})
}

func TestConnectTLSFilesErrorsNameTheVariable(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	notPEM := filepath.Join(dir, "not.pem")
	require.NoError(t, os.WriteFile(notPEM, []byte("hello"), 0o600))
	missing := filepath.Join(dir, "missing.pem")
	ca, err := mtls.NewCA("test CA", time.Hour)
	require.NoError(t, err)
	issued, err := ca.Issue("order", nil, time.Hour)
	require.NoError(t, err)
	cert, key := filepath.Join(dir, "c.crt"), filepath.Join(dir, "c.key")
	require.NoError(t, issued.WriteFiles(cert, key))

	tests := []struct {
		name string
		cfg  config.Redis
		want string
	}{
		{"missing CA", config.Redis{CAFile: missing}, "redis: REDIS_CA_FILE: open " + missing},
		{"CA not PEM", config.Redis{CAFile: notPEM}, "redis: REDIS_CA_FILE: " + notPEM + " holds no PEM certificate"},
		{"missing client certificate", config.Redis{CertFile: missing, KeyFile: key}, "redis: REDIS_TLS_CERT_FILE, REDIS_TLS_KEY_FILE: open " + missing},
		{"key not PEM", config.Redis{CertFile: cert, KeyFile: notPEM}, "redis: REDIS_TLS_CERT_FILE, REDIS_TLS_KEY_FILE:"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			for _, cfg := range []config.Redis{
				{URL: "rediss://127.0.0.1:1", CAFile: tt.cfg.CAFile, CertFile: tt.cfg.CertFile, KeyFile: tt.cfg.KeyFile},
				{URL: "rediss://", Addrs: []string{"127.0.0.1:1"}, CAFile: tt.cfg.CAFile, CertFile: tt.cfg.CertFile, KeyFile: tt.cfg.KeyFile},
			} {
				start := time.Now()
				client, err := redisclient.Connect(t.Context(), cfg, nil, 5*time.Second)
				require.Nil(t, client)
				require.ErrorContains(t, err, tt.want)
				require.Less(t, time.Since(start), time.Second, "before dialling")
			}
		})
	}
}
