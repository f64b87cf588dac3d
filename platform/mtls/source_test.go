package mtls_test

import (
	"crypto/x509"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/goodgo/goodgo/platform/mtls"
	"github.com/goodgo/goodgo/platform/servicetest"
)

func TestID(t *testing.T) {
	t.Parallel()
	require.Equal(t, "spiffe://goodgo/payment", mtls.ID("payment"))
}

func TestServiceOf(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		uris    []string
		want    string
		wantErr string
	}{
		{"one GoodGo ID", []string{"spiffe://goodgo/payment"}, "payment", ""},
		{"other URI SANs are ignored", []string{"https://payment.example/", "spiffe://goodgo/payment"}, "payment", ""},
		{"upper-case scheme is still spiffe", []string{"SPIFFE://goodgo/payment"}, "payment", ""},
		{"no URI SAN", nil, "", "0 SPIFFE IDs"},
		{"only a non-SPIFFE URI", []string{"https://goodgo/payment"}, "", "0 SPIFFE IDs"},
		{"two IDs", []string{"spiffe://goodgo/payment", "spiffe://goodgo/order"}, "", "2 SPIFFE IDs"},
		{"the same ID twice", []string{"spiffe://goodgo/payment", "spiffe://goodgo/payment"}, "", "2 SPIFFE IDs"},
		{"other trust domain", []string{"spiffe://evil/payment"}, "", "is not spiffe://goodgo/<service>"},
		{"trust domain with a suffix", []string{"spiffe://goodgo.evil/payment"}, "", "is not spiffe://goodgo/<service>"},
		{"trust domain with a port", []string{"spiffe://goodgo:443/payment"}, "", "is not spiffe://goodgo/<service>"},
		{"trust domain in upper case", []string{"spiffe://GOODGO/payment"}, "", "is not spiffe://goodgo/<service>"},
		{"path with two segments", []string{"spiffe://goodgo/ns/payment"}, "", "is not spiffe://goodgo/<service>"},
		{"encoded slash", []string{"spiffe://goodgo/ns%2Fpayment"}, "", "is not spiffe://goodgo/<service>"},
		{"trailing slash", []string{"spiffe://goodgo/payment/"}, "", "is not spiffe://goodgo/<service>"},
		{"double slash", []string{"spiffe://goodgo//payment"}, "", "is not spiffe://goodgo/<service>"},
		{"no path", []string{"spiffe://goodgo"}, "", "is not spiffe://goodgo/<service>"},
		{"empty name", []string{"spiffe://goodgo/"}, "", "is not spiffe://goodgo/<service>"},
		{"query", []string{"spiffe://goodgo/payment?as=admin"}, "", "is not spiffe://goodgo/<service>"},
		{"fragment", []string{"spiffe://goodgo/payment#x"}, "", "is not spiffe://goodgo/<service>"},
		{"user info", []string{"spiffe://admin@goodgo/payment"}, "", "is not spiffe://goodgo/<service>"},
		{"no host", []string{"spiffe:///payment"}, "", "is not spiffe://goodgo/<service>"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := &x509.Certificate{}
			for _, s := range tt.uris {
				u, err := url.Parse(s)
				require.NoError(t, err)
				c.URIs = append(c.URIs, u)
			}
			got, err := mtls.ServiceOf(c)
			requireService(t, got, err, tt.want, tt.wantErr)
		})
	}
}

func TestLoad(t *testing.T) {
	t.Parallel()
	ca := newCA(t, "test CA")
	files := writeIdentity(t, t.TempDir(), issue(t, ca, "payment", "127.0.0.1"), ca.PEM)

	src, err := mtls.Load(files, nil)
	require.NoError(t, err)
	require.Equal(t, "payment", src.Service())
	tc, leaf := src.Certificate()
	require.NotNil(t, tc)
	require.NotNil(t, tc.PrivateKey)
	require.Equal(t, []string{"spiffe://goodgo/payment"}, []string{leaf.URIs[0].String()})
	require.Equal(t, leaf.Raw, tc.Certificate[0], "the leaf is the chain's first certificate")
}

func TestLoadErrorsNameTheFile(t *testing.T) {
	t.Parallel()
	ca := newCA(t, "test CA")
	other := newCA(t, "other CA")

	// Each case gets a correct identity in its own directory and breaks it.
	tests := []struct {
		name    string
		breakIt func(t *testing.T, f *mtls.Files)
		want    func(f mtls.Files) []string
	}{
		{
			name:    "no certificate file name",
			breakIt: func(_ *testing.T, f *mtls.Files) { f.Cert = "" },
			want:    func(mtls.Files) []string { return []string{"certificate, key and CA files are all required"} },
		},
		{
			name:    "no CA file name",
			breakIt: func(_ *testing.T, f *mtls.Files) { f.CA = "" },
			want:    func(mtls.Files) []string { return []string{"all required"} },
		},
		{
			name:    "missing certificate",
			breakIt: func(t *testing.T, f *mtls.Files) { require.NoError(t, os.Remove(f.Cert)) },
			want:    func(f mtls.Files) []string { return []string{"read " + f.Cert, "no such file"} },
		},
		{
			name:    "missing key",
			breakIt: func(t *testing.T, f *mtls.Files) { require.NoError(t, os.Remove(f.Key)) },
			want:    func(f mtls.Files) []string { return []string{"read " + f.Key} },
		},
		{
			name:    "missing CA",
			breakIt: func(t *testing.T, f *mtls.Files) { require.NoError(t, os.Remove(f.CA)) },
			want:    func(f mtls.Files) []string { return []string{"read " + f.CA} },
		},
		{
			name: "key of another certificate",
			breakIt: func(t *testing.T, f *mtls.Files) {
				require.NoError(t, os.WriteFile(f.Key, issue(t, ca, "payment").KeyPEM, 0o600))
			},
			want: func(f mtls.Files) []string {
				return []string{f.Cert + " with " + f.Key, "private key does not match public key"}
			},
		},
		{
			name: "garbage certificate",
			breakIt: func(t *testing.T, f *mtls.Files) {
				require.NoError(t, os.WriteFile(f.Cert, []byte("not a certificate"), 0o600))
			},
			want: func(f mtls.Files) []string { return []string{f.Cert + " with " + f.Key} },
		},
		{
			name:    "CA file without PEM",
			breakIt: func(t *testing.T, f *mtls.Files) { require.NoError(t, os.WriteFile(f.CA, []byte("junk"), 0o600)) },
			want:    func(f mtls.Files) []string { return []string{f.CA + " holds no PEM certificate"} },
		},
		{
			name: "certificate of another CA",
			breakIt: func(t *testing.T, f *mtls.Files) {
				require.NoError(t, issue(t, other, "payment").WriteFiles(f.Cert, f.Key))
			},
			want: func(f mtls.Files) []string {
				return []string{f.Cert + " is not signed by a CA in " + f.CA, "unknown authority"}
			},
		},
		{
			name: "certificate without SPIFFE ID",
			breakIt: func(t *testing.T, f *mtls.Files) {
				is, err := ca.IssueRaw("", "payment", time.Hour)
				require.NoError(t, err)
				require.NoError(t, is.WriteFiles(f.Cert, f.Key))
			},
			want: func(f mtls.Files) []string { return []string{f.Cert + ": certificate has 0 SPIFFE IDs"} },
		},
		{
			name: "certificate of another trust domain",
			breakIt: func(t *testing.T, f *mtls.Files) {
				is, err := ca.IssueRaw("spiffe://example.org/payment", "payment", time.Hour)
				require.NoError(t, err)
				require.NoError(t, is.WriteFiles(f.Cert, f.Key))
			},
			want: func(f mtls.Files) []string { return []string{f.Cert, "spiffe://example.org/payment"} },
		},
		{
			name: "expired certificate",
			breakIt: func(t *testing.T, f *mtls.Files) {
				is, err := ca.Issue("payment", nil, -time.Second)
				require.NoError(t, err)
				require.NoError(t, is.WriteFiles(f.Cert, f.Key))
			},
			want: func(f mtls.Files) []string { return []string{f.Cert, "expired"} },
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := writeIdentity(t, t.TempDir(), issue(t, ca, "payment"), ca.PEM)
			_, err := mtls.Load(f, nil) // the unbroken identity loads
			require.NoError(t, err)

			tt.breakIt(t, &f)
			src, err := mtls.Load(f, nil)
			require.Error(t, err)
			require.Nil(t, src)
			for _, want := range tt.want(f) {
				require.ErrorContains(t, err, want)
			}
		})
	}
}

func serialOf(src *mtls.Source) string {
	_, leaf := src.Certificate()
	return leaf.SerialNumber.String()
}

// watchedSource is a Source loaded from a payment identity issued by ca,
// logging into logs; serial is the certificate it served first.
type watchedSource struct {
	ca     *mtls.CA
	issued mtls.Issued
	files  mtls.Files
	logs   *servicetest.Logs
	src    *mtls.Source
	serial string
}

func watchPayment(t *testing.T) *watchedSource {
	t.Helper()
	w := &watchedSource{ca: newCA(t, "test CA"), logs: &servicetest.Logs{}}
	w.issued = issue(t, w.ca, "payment")
	w.files = writeIdentity(t, t.TempDir(), w.issued, w.ca.PEM)
	w.src = load(t, w.files, jsonLogger(w.logs))
	w.serial = serialOf(w.src)
	return w
}

// requireKept waits until the source, asked for its certificate (a caller
// triggers the check), has logged logged, then requires that it still
// serves the certificate it served first.
func (w *watchedSource) requireKept(t *testing.T, logged string) {
	t.Helper()
	require.Eventually(t, func() bool {
		_ = serialOf(w.src)
		return strings.Contains(w.logs.String(), logged)
	}, 5*time.Second, 20*time.Millisecond, "the files are read and %q is logged", logged)
	require.Equal(t, w.serial, serialOf(w.src), "the previous certificate is still served")
}

// requireServes waits until the source serves the certificate of issued.
func (w *watchedSource) requireServes(t *testing.T, issued mtls.Issued, msgAndArgs ...any) {
	t.Helper()
	want := parseCert(t, issued.CertPEM).SerialNumber.String()
	require.NotEqual(t, w.serial, want)
	require.Eventually(t, func() bool { return serialOf(w.src) == want }, 5*time.Second, 20*time.Millisecond, msgAndArgs...)
}

func TestSourceReloadsRenewedCertificate(t *testing.T) {
	t.Parallel()
	w := watchPayment(t)
	require.Equal(t, parseCert(t, w.issued.CertPEM).SerialNumber.String(), w.serial)

	renewed := issue(t, w.ca, "payment")
	require.NoError(t, renewed.WriteFiles(w.files.Cert, w.files.Key))

	w.requireServes(t, renewed, "the renewed certificate is served within the deadline")
	require.Equal(t, "payment", w.src.Service())
	tc, _ := w.src.Certificate()
	require.Equal(t, parseCert(t, renewed.CertPEM).PublicKey, tc.Leaf.PublicKey, "with the renewed key")
	require.Contains(t, w.logs.String(), "mtls: certificate reloaded")
}

func TestSourceKeepsIdentityOnBrokenRewrite(t *testing.T) {
	t.Parallel()
	w := watchPayment(t)

	require.NoError(t, mtls.WriteFileAtomic(w.files.Cert, []byte("-----BEGIN CERTIFICATE-----\ngarbage\n"), 0o644))
	w.requireKept(t, "cannot be loaded; keeping the previous identity")
	require.Equal(t, "payment", w.src.Service())
	tc, _ := w.src.Certificate()
	require.NotNil(t, tc.PrivateKey)

	// The failed reload is retried: once the files are whole again, the
	// new certificate is adopted.
	fixed := issue(t, w.ca, "payment")
	require.NoError(t, fixed.WriteFiles(w.files.Cert, w.files.Key))
	w.requireServes(t, fixed)
}

func TestSourceKeepsIdentityWhenKeyIsRemoved(t *testing.T) {
	t.Parallel()
	w := watchPayment(t)

	require.NoError(t, os.Remove(w.files.Key))
	w.requireKept(t, "cannot be loaded")
	require.Contains(t, w.logs.String(), w.files.Key, "the log names the file")
}

func TestSourceRefusesCertificateOfAnotherService(t *testing.T) {
	t.Parallel()
	w := watchPayment(t)

	require.NoError(t, issue(t, w.ca, "inventory").WriteFiles(w.files.Cert, w.files.Key))
	w.requireKept(t, "names another service")
	require.Equal(t, "payment", w.src.Service())
	_, leaf := w.src.Certificate()
	require.Equal(t, mtls.ID("payment"), leaf.URIs[0].String())
}

func TestSourceReloadsRotatedCA(t *testing.T) {
	t.Parallel()
	oldCA := newCA(t, "old CA")
	newCA_ := newCA(t, "new CA")
	files := writeIdentity(t, t.TempDir(), issue(t, oldCA, "payment"), oldCA.PEM)
	src := load(t, files, nil)

	oldPeer := parseCert(t, issue(t, oldCA, "orchestrator").CertPEM)
	newPeer := parseCert(t, issue(t, newCA_, "orchestrator").CertPEM)
	_, err := src.VerifyChain([]*x509.Certificate{oldPeer}, x509.ExtKeyUsageClientAuth)
	require.NoError(t, err)
	_, err = src.VerifyChain([]*x509.Certificate{newPeer}, x509.ExtKeyUsageClientAuth)
	require.Error(t, err)

	// The CA bundle first (the old certificate then fails to verify, which
	// keeps the old identity), then the certificate of the new CA.
	require.NoError(t, mtls.WriteFileAtomic(files.CA, newCA_.PEM, 0o644))
	renewed := issue(t, newCA_, "payment")
	require.NoError(t, renewed.WriteFiles(files.Cert, files.Key))
	want := parseCert(t, renewed.CertPEM).SerialNumber.String()
	require.Eventually(t, func() bool { return serialOf(src) == want }, 5*time.Second, 20*time.Millisecond)

	got, err := src.VerifyChain([]*x509.Certificate{newPeer}, x509.ExtKeyUsageClientAuth)
	require.NoError(t, err)
	require.Equal(t, "orchestrator", got)
	_, err = src.VerifyChain([]*x509.Certificate{oldPeer}, x509.ExtKeyUsageClientAuth)
	require.ErrorContains(t, err, "certificate not trusted", "the old CA is no longer trusted")
}

func TestVerifyChain(t *testing.T) {
	t.Parallel()
	ca := newCA(t, "test CA")
	other := newCA(t, "other CA")
	src := loadService(t, ca, "payment")

	ours := parseCert(t, issue(t, ca, "orchestrator").CertPEM)
	theirs := parseCert(t, issue(t, other, "orchestrator").CertPEM)
	_, serverOnly := customCert(t, ca, "orchestrator", func(c *x509.Certificate) {
		c.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
	})
	expiredIssued, err := ca.Issue("orchestrator", nil, -time.Second)
	require.NoError(t, err)
	expired := parseCert(t, expiredIssued.CertPEM)
	noIDIssued, err := ca.IssueRaw("", "orchestrator", time.Hour)
	require.NoError(t, err)
	noID := parseCert(t, noIDIssued.CertPEM)
	_, twoIDs := customCert(t, ca, "orchestrator", func(c *x509.Certificate) {
		c.URIs = append(c.URIs, mustURL(t, mtls.ID("admin")))
	})

	tests := []struct {
		name    string
		chain   []*x509.Certificate
		usage   x509.ExtKeyUsage
		want    string
		wantErr string
	}{
		{"client certificate of our CA", []*x509.Certificate{ours}, x509.ExtKeyUsageClientAuth, "orchestrator", ""},
		{"as a server too", []*x509.Certificate{ours}, x509.ExtKeyUsageServerAuth, "orchestrator", ""},
		{"no certificate", nil, x509.ExtKeyUsageClientAuth, "", "no certificate"},
		{"another CA", []*x509.Certificate{theirs}, x509.ExtKeyUsageClientAuth, "", "certificate not trusted"},
		{"another CA with our CA appended", []*x509.Certificate{theirs, ca.Cert}, x509.ExtKeyUsageClientAuth, "", "certificate not trusted"},
		{"another CA with its CA appended", []*x509.Certificate{theirs, other.Cert}, x509.ExtKeyUsageClientAuth, "", "certificate not trusted"},
		{"the CA itself", []*x509.Certificate{ca.Cert}, x509.ExtKeyUsageClientAuth, "", "SPIFFE"},
		{"server-only certificate as a client", []*x509.Certificate{serverOnly}, x509.ExtKeyUsageClientAuth, "", "certificate not trusted"},
		{"server-only certificate as a server", []*x509.Certificate{serverOnly}, x509.ExtKeyUsageServerAuth, "orchestrator", ""},
		{"expired", []*x509.Certificate{expired}, x509.ExtKeyUsageClientAuth, "", "expired"},
		{"no SPIFFE ID", []*x509.Certificate{noID}, x509.ExtKeyUsageClientAuth, "", "0 SPIFFE IDs"},
		{"two SPIFFE IDs", []*x509.Certificate{twoIDs}, x509.ExtKeyUsageClientAuth, "", "2 SPIFFE IDs"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := src.VerifyChain(tt.chain, tt.usage)
			requireService(t, got, err, tt.want, tt.wantErr)
		})
	}
}

func TestWriteFileAtomic(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	name := filepath.Join(dir, "tls.key")
	require.NoError(t, mtls.WriteFileAtomic(name, []byte("one"), 0o600))
	require.NoError(t, mtls.WriteFileAtomic(name, []byte("two"), 0o600))
	b, err := os.ReadFile(name)
	require.NoError(t, err)
	require.Equal(t, "two", string(b))
	fi, err := os.Stat(name)
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o600), fi.Mode().Perm())
	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	require.Len(t, entries, 1, "no temporary file is left behind")

	require.Error(t, mtls.WriteFileAtomic(filepath.Join(dir, "missing", "x"), []byte("x"), 0o600))
}

func TestLoadCA(t *testing.T) {
	t.Parallel()
	ca := newCA(t, "test CA")
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "ca.crt"), filepath.Join(dir, "ca.key")
	kp, err := ca.KeyPEM()
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(certFile, ca.PEM, 0o600))
	require.NoError(t, os.WriteFile(keyFile, kp, 0o600))

	loaded, err := mtls.LoadCA(certFile, keyFile)
	require.NoError(t, err)
	// A certificate the loaded CA issues is trusted by a Source of the
	// original CA.
	src := loadService(t, ca, "payment")
	got, err := src.VerifyChain([]*x509.Certificate{parseCert(t, issue(t, loaded, "order").CertPEM)}, x509.ExtKeyUsageClientAuth)
	require.NoError(t, err)
	require.Equal(t, "order", got)

	// A leaf certificate is not a CA.
	leaf := issue(t, ca, "order")
	require.NoError(t, os.WriteFile(certFile, leaf.CertPEM, 0o600))
	require.NoError(t, os.WriteFile(keyFile, leaf.KeyPEM, 0o600))
	_, err = mtls.LoadCA(certFile, keyFile)
	require.ErrorContains(t, err, "is not a CA")

	_, err = mtls.LoadCA(filepath.Join(dir, "missing"), keyFile)
	require.Error(t, err)
}
