package cluster

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"

	"github.com/picket-dev/picket/internal/config"
)

// MutualTLS builds the RPC port's server and client TLS configs from cluster.tls: both sides
// present a certificate and verify the peer's against the cluster CA. Any certificate the CA
// signed is accepted whatever its host names (agents dial each other by address), so the CA
// must be the cluster's own. Without cluster.tls it returns nil, nil, nil (plaintext).
func MutualTLS(t config.TLS) (server, client *tls.Config, err error) {
	if !t.Enabled() {
		return nil, nil, nil
	}
	if t.CAFile == "" || t.CertFile == "" || t.KeyFile == "" {
		return nil, nil, errors.New("cluster.tls needs ca_file, cert_file and key_file together")
	}
	cert, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile)
	if err != nil {
		return nil, nil, fmt.Errorf("cluster.tls: load %s and %s: %w", t.CertFile, t.KeyFile, err)
	}
	pem, err := os.ReadFile(t.CAFile)
	if err != nil {
		return nil, nil, fmt.Errorf("cluster.tls.ca_file: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, nil, fmt.Errorf("cluster.tls.ca_file %s: no PEM certificate found", t.CAFile)
	}
	verify := func(cs tls.ConnectionState) error {
		if len(cs.PeerCertificates) == 0 {
			return errors.New("peer sent no certificate")
		}
		opts := x509.VerifyOptions{
			Roots:         pool,
			Intermediates: x509.NewCertPool(),
			KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageAny},
		}
		for _, c := range cs.PeerCertificates[1:] {
			opts.Intermediates.AddCert(c)
		}
		_, err := cs.PeerCertificates[0].Verify(opts)
		return err
	}
	server = &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{cert},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    pool,
	}
	client = &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{cert},
		// Host names are not checked (peers are dialled by address); VerifyConnection checks
		// the chain against the cluster CA instead.
		InsecureSkipVerify: true,
		VerifyConnection:   verify,
	}
	return server, client, nil
}
