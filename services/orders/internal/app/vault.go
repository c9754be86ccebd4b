package app

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/awesome-pizza/pizza/services/orders/ordersapi"
	"github.com/nats-io/nats.go/jetstream"
)

// VaultBucket is the JetStream key-value bucket holding customers' personal
// data (delivery addresses). Events only reference it, so erasing a
// customer's data is a delete here, not a rewrite of the log.
const VaultBucket = "PII"

// Vault stores personal data outside the event log.
type Vault struct {
	kv jetstream.KeyValue
}

// OpenVault creates or opens the vault bucket.
func OpenVault(ctx context.Context, js jetstream.JetStream, replicas int, storage jetstream.StorageType) (*Vault, error) {
	if replicas < 1 {
		replicas = 1
	}
	kv, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket:      VaultBucket,
		Description: "Personal data referenced by events (erasable)",
		History:     1,
		Storage:     storage,
		Replicas:    replicas,
	})
	if err != nil {
		return nil, fmt.Errorf("open vault: %w", err)
	}
	return &Vault{kv: kv}, nil
}

// AddressRef is the reference an order's events carry for its address.
func AddressRef(orderID string) string { return "address." + orderID }

// customerKey indexes a customer's orders in the vault, so an erasure
// request finds them without scanning the log.
func customerKey(customerID, orderID string) string { return "customer." + customerID + "." + orderID }

// IndexOrder records that the order belongs to the customer.
func (v *Vault) IndexOrder(ctx context.Context, customerID, orderID string) error {
	if _, err := v.kv.Put(ctx, customerKey(customerID, orderID), nil); err != nil {
		return fmt.Errorf("vault: index order %s: %w", orderID, err)
	}
	return nil
}

// CustomerOrders lists the orders the vault holds data of for a customer.
func (v *Vault) CustomerOrders(ctx context.Context, customerID string) ([]string, error) {
	lister, err := v.kv.ListKeysFiltered(ctx, "customer."+customerID+".*")
	if err != nil {
		return nil, err
	}
	var ids []string
	prefix := "customer." + customerID + "."
	for k := range lister.Keys() {
		ids = append(ids, k[len(prefix):])
	}
	return ids, nil
}

// EraseOrder removes the order's personal data and its index entry,
// history included (purge), so nothing of it remains in the bucket.
func (v *Vault) EraseOrder(ctx context.Context, customerID, orderID string) error {
	for _, k := range []string{AddressRef(orderID), customerKey(customerID, orderID)} {
		if err := v.kv.Purge(ctx, k); err != nil && !errors.Is(err, jetstream.ErrKeyNotFound) {
			return fmt.Errorf("vault: erase %s: %w", k, err)
		}
	}
	return nil
}

// ErrAddressConflict reports an attempt to store another address for an
// order that already has one (an Idempotency-Key reused with another body).
var ErrAddressConflict = errors.New("vault: the order already has a different address")

// PutAddress stores the delivery address of an order and returns its
// reference. It never overwrites: storing the same address again (a retry)
// succeeds, a different one fails with ErrAddressConflict.
func (v *Vault) PutAddress(ctx context.Context, orderID string, a ordersapi.Address) (string, error) {
	ref := AddressRef(orderID)
	b, err := json.Marshal(a)
	if err != nil {
		return "", err
	}
	_, err = v.kv.Create(ctx, ref, b)
	if errors.Is(err, jetstream.ErrKeyExists) {
		existing, gerr := v.kv.Get(ctx, ref)
		if gerr != nil {
			return "", fmt.Errorf("vault: read address of %s: %w", orderID, gerr)
		}
		if !bytes.Equal(existing.Value(), b) {
			return "", ErrAddressConflict
		}
		return ref, nil
	}
	if err != nil {
		return "", fmt.Errorf("vault: store address of %s: %w", orderID, err)
	}
	return ref, nil
}

// Address returns a stored address.
func (v *Vault) Address(ctx context.Context, ref string) (ordersapi.Address, error) {
	var a ordersapi.Address
	e, err := v.kv.Get(ctx, ref)
	if err != nil {
		return a, fmt.Errorf("vault: %s: %w", ref, err)
	}
	return a, json.Unmarshal(e.Value(), &a)
}
