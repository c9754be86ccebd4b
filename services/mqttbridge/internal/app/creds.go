package app

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/awesome-pizza/pizza/services/mqttbridge/mqttapi"
	"github.com/nats-io/nats.go/jetstream"
)

// Credentials keeps one salted secret hash per device in the JetStream
// key-value bucket mqttapi.CredentialsBucket, keyed by device id.
//
// Secrets are 32 random bytes, so a salted SHA-256 resists offline attacks
// as well as a slow password hash would, without making a reconnect storm
// of a thousand phones CPU-bound.
type Credentials struct {
	kv    jetstream.KeyValue
	clock func() time.Time
}

// credential is the stored record. It never holds the secret itself.
type credential struct {
	Kind      string    `json:"kind"`
	Algorithm string    `json:"algorithm"` // "sha256-salted"
	Salt      string    `json:"salt"`      // base64
	Hash      string    `json:"hash"`      // base64 of sha256(salt || secret)
	IssuedAt  time.Time `json:"issuedAt"`
}

const algorithm = "sha256-salted"

// ErrKindConflict reports a device id already used by a device of another
// kind.
var ErrKindConflict = errors.New("the device id belongs to a device of another kind")

// ErrCredentialsUnavailable wraps failures to reach the bucket.
var ErrCredentialsUnavailable = errors.New("credential store unavailable")

// OpenCredentials creates or updates the bucket and returns the store.
func OpenCredentials(ctx context.Context, js jetstream.JetStream, replicas int, storage jetstream.StorageType, clock func() time.Time) (*Credentials, error) {
	if replicas < 1 {
		replicas = 1
	}
	kv, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket:      mqttapi.CredentialsBucket,
		Description: "MQTT device credentials: salted secret hashes, keyed by device id",
		History:     1,
		Replicas:    replicas,
		Storage:     storage,
	})
	if err != nil {
		return nil, fmt.Errorf("credentials bucket: %w", err)
	}
	return &Credentials{kv: kv, clock: clock}, nil
}

// Issue creates a new secret for the device, replacing (revoking) the
// previous one. It returns the secret, which is not stored, and the
// revision of the new record.
func (c *Credentials) Issue(ctx context.Context, kind, deviceID string) (secret string, rev uint64, issuedAt time.Time, err error) {
	if old, err := c.kv.Get(ctx, deviceID); err == nil {
		var rec credential
		if json.Unmarshal(old.Value(), &rec) == nil && rec.Kind != kind {
			return "", 0, time.Time{}, fmt.Errorf("%w: %s is a %s", ErrKindConflict, deviceID, rec.Kind)
		}
	} else if !errors.Is(err, jetstream.ErrKeyNotFound) {
		return "", 0, time.Time{}, fmt.Errorf("%w: %v", ErrCredentialsUnavailable, err)
	}
	raw := make([]byte, 32)
	salt := make([]byte, 16)
	if _, err := rand.Read(raw); err != nil {
		return "", 0, time.Time{}, err
	}
	if _, err := rand.Read(salt); err != nil {
		return "", 0, time.Time{}, err
	}
	secret = base64.RawURLEncoding.EncodeToString(raw)
	issuedAt = c.clock().UTC()
	rec := credential{Kind: kind, Algorithm: algorithm, Salt: base64.StdEncoding.EncodeToString(salt), Hash: base64.StdEncoding.EncodeToString(hashSecret(salt, secret)), IssuedAt: issuedAt}
	b, err := json.Marshal(rec)
	if err != nil {
		return "", 0, time.Time{}, err
	}
	rev, err = c.kv.Put(ctx, deviceID, b)
	if err != nil {
		return "", 0, time.Time{}, fmt.Errorf("%w: %v", ErrCredentialsUnavailable, err)
	}
	return secret, rev, issuedAt, nil
}

// Verify checks a device's secret. ok is false for an unknown device or a
// wrong secret; err reports a store that could not be asked.
func (c *Credentials) Verify(ctx context.Context, deviceID, secret string) (kind string, rev uint64, ok bool, err error) {
	e, err := c.kv.Get(ctx, deviceID)
	if errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, jetstream.ErrInvalidKey) {
		return "", 0, false, nil
	}
	if err != nil {
		return "", 0, false, fmt.Errorf("%w: %v", ErrCredentialsUnavailable, err)
	}
	var rec credential
	if err := json.Unmarshal(e.Value(), &rec); err != nil || rec.Algorithm != algorithm {
		return "", 0, false, nil
	}
	salt, err1 := base64.StdEncoding.DecodeString(rec.Salt)
	want, err2 := base64.StdEncoding.DecodeString(rec.Hash)
	if err1 != nil || err2 != nil {
		return "", 0, false, nil
	}
	if subtle.ConstantTimeCompare(hashSecret(salt, secret), want) != 1 {
		return "", 0, false, nil
	}
	return rec.Kind, e.Revision(), true, nil
}

// Watch calls onChange for every credential issued or removed after it
// started, until ctx ends. Sessions authenticated with an older revision
// of that device's credential must be ended.
func (c *Credentials) Watch(ctx context.Context, onChange func(deviceID string, rev uint64)) error {
	w, err := c.kv.WatchAll(ctx, jetstream.UpdatesOnly())
	if err != nil {
		return err
	}
	defer func() { _ = w.Stop() }()
	for {
		select {
		case <-ctx.Done():
			return nil
		case e, ok := <-w.Updates():
			if !ok {
				return nil
			}
			if e != nil {
				onChange(e.Key(), e.Revision())
			}
		}
	}
}

func hashSecret(salt []byte, secret string) []byte {
	h := sha256.New()
	h.Write(salt)
	h.Write([]byte(secret))
	return h.Sum(nil)
}
