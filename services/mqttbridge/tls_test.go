package mqttbridge_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/awesome-pizza/pizza/pkg/service"
	"github.com/awesome-pizza/pizza/services/mqttbridge"
	mqtt "github.com/eclipse/paho.mqtt.golang"
)

// Devices reach the bridge over TLS with the platform's certificate.
func TestMQTTOverTLS(t *testing.T) {
	dir := t.TempDir()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "localhost"}, NotBefore: time.Now().Add(-time.Hour),
		NotAfter: time.Now().Add(time.Hour), IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kb, _ := x509.MarshalECPrivateKey(key)
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	_ = os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
	_ = os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600)

	h := newHarness(t, mqttbridge.Config{TLS: service.TLSFiles{Cert: certFile, Key: keyFile}})
	cert, _ := x509.ParseCertificate(der)
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	connect := func(broker string, cfg *tls.Config) error {
		opts := mqtt.NewClientOptions().AddBroker(broker).SetClientID("tls-phone").SetUsername("pearl-driver-1").
			SetPassword(h.secrets["pearl-driver-1"]).SetAutoReconnect(false).SetConnectTimeout(3 * time.Second)
		if cfg != nil {
			opts.SetTLSConfig(cfg)
		}
		c := mqtt.NewClient(opts)
		tok := c.Connect()
		tok.WaitTimeout(5 * time.Second)
		if tok.Error() == nil {
			c.Disconnect(50)
		}
		return tok.Error()
	}
	if err := connect("ssl://"+h.addr, &tls.Config{RootCAs: pool}); err != nil {
		t.Fatalf("TLS connect: %v", err)
	}
}
