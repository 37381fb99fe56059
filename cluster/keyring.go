package cluster

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"

	"github.com/hashicorp/memberlist"
)

// Keyring errors, checked with errors.Is.
var (
	// ErrNoKeyring: gossip encryption is off, so there is no keyring to change.
	ErrNoKeyring = errors.New("gossip encryption is off (no cluster.key): set cluster.key and restart the agent to use a keyring")
	// ErrBadKey: the key is not base64 of 16, 24 or 32 bytes.
	ErrBadKey = errors.New("invalid gossip key")
	// ErrKeyNotInstalled: UseKey or RemoveKey named a key that is not in the keyring.
	ErrKeyNotInstalled = errors.New("gossip key is not installed")
	// ErrPrimaryKey: RemoveKey named the key currently used to encrypt.
	ErrPrimaryKey = errors.New("cannot remove the primary gossip key")
)

// ParseKey decodes a gossip key: standard base64 of 16, 24 or 32 bytes (AES-128/192/256),
// as `picket keygen` prints it.
func ParseKey(s string) ([]byte, error) {
	s = strings.TrimSpace(s)
	k, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		return nil, fmt.Errorf("%w: not standard base64 (%v): generate one with `picket keygen`", ErrBadKey, err)
	}
	if err := memberlist.ValidateKey(k); err != nil {
		return nil, fmt.Errorf("%w: decodes to %d bytes, need 16, 24 or 32: generate one with `picket keygen`", ErrBadKey, len(k))
	}
	return k, nil
}

// The keyring methods below change only this agent's memberlist keyring. Rotating the key of
// a whole cluster means calling them on every agent in turn (install everywhere, then use
// everywhere, then remove the old key everywhere); the cluster-wide fan-out over agent RPC
// is built on top of these. The memberlist keyring is safe for concurrent use.

// ListKeys returns the installed gossip keys in base64, the primary (encrypting) key first.
// It returns nil when encryption is off.
func (m *Membership) ListKeys() []string {
	if m.keyring == nil {
		return nil
	}
	keys := m.keyring.GetKeys()
	out := make([]string, 0, len(keys))
	for _, k := range keys {
		out = append(out, base64.StdEncoding.EncodeToString(k))
	}
	return out
}

// InstallKey adds a key that this agent accepts for decryption; it does not encrypt with it
// until UseKey. Installing a key twice is a no-op.
func (m *Membership) InstallKey(key string) error {
	k, err := m.keyArg(key)
	if err != nil {
		return err
	}
	if err := m.keyring.AddKey(k); err != nil {
		return fmt.Errorf("install gossip key: %w", err)
	}
	m.log.Info("gossip key installed", "keys", len(m.keyring.GetKeys()))
	return nil
}

// UseKey makes an installed key the primary one, used to encrypt from now on. Every peer
// must have it installed first, or they will refuse this agent's gossip.
func (m *Membership) UseKey(key string) error {
	k, err := m.keyArg(key)
	if err != nil {
		return err
	}
	if !m.hasKey(k) {
		return fmt.Errorf("use gossip key: %w: install it first", ErrKeyNotInstalled)
	}
	if err := m.keyring.UseKey(k); err != nil {
		return fmt.Errorf("use gossip key: %w", err)
	}
	m.log.Info("gossip primary key changed")
	return nil
}

// RemoveKey drops an installed key that is not the primary one.
func (m *Membership) RemoveKey(key string) error {
	k, err := m.keyArg(key)
	if err != nil {
		return err
	}
	if bytes.Equal(k, m.keyring.GetPrimaryKey()) {
		return fmt.Errorf("remove gossip key: %w: make another key primary with UseKey first", ErrPrimaryKey)
	}
	if !m.hasKey(k) {
		return fmt.Errorf("remove gossip key: %w", ErrKeyNotInstalled)
	}
	if err := m.keyring.RemoveKey(k); err != nil {
		return fmt.Errorf("remove gossip key: %w", err)
	}
	m.log.Info("gossip key removed", "keys", len(m.keyring.GetKeys()))
	return nil
}

func (m *Membership) keyArg(key string) ([]byte, error) {
	if m.keyring == nil {
		return nil, ErrNoKeyring
	}
	return ParseKey(key)
}

func (m *Membership) hasKey(k []byte) bool {
	for _, have := range m.keyring.GetKeys() {
		if bytes.Equal(have, k) {
			return true
		}
	}
	return false
}
