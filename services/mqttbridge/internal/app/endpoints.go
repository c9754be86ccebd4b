package app

import (
	"context"
	"errors"
	"slices"
	"strings"

	"github.com/awesome-pizza/pizza/pkg/catalog"
	"github.com/awesome-pizza/pizza/pkg/events"
	"github.com/awesome-pizza/pizza/pkg/eventstore"
	"github.com/awesome-pizza/pizza/pkg/problem"
	"github.com/awesome-pizza/pizza/pkg/service"
	"github.com/awesome-pizza/pizza/services/mqttbridge/internal/device"
	"github.com/awesome-pizza/pizza/services/mqttbridge/mqttapi"
	"github.com/nats-io/nats.go/micro"
)

// ErrDeviceNotFound reports a credential request for a driver or kitchen
// the platform does not know.
var ErrDeviceNotFound = errors.New("device not found")

// Issuer issues device credentials.
type Issuer struct {
	b       *Bridge
	catalog *catalog.Catalog
	drivers *eventstore.Store // DRIVERS, to check that a driver is registered
}

// NewIssuer returns the credentials command handler.
func NewIssuer(b *Bridge, cat *catalog.Catalog, drivers *eventstore.Store) *Issuer {
	return &Issuer{b: b, catalog: cat, drivers: drivers}
}

// Register adds the command endpoints to a micro service; e runs them.
func (i *Issuer) Register(svc micro.Service, e *service.Endpoints) error {
	return svc.AddEndpoint("credentials", service.Handle(e, i.Issue), micro.WithEndpointSubject(mqttapi.SubjectCredentials))
}

// Issue validates the command, checks that the device exists, and issues
// a new secret that replaces the old one. Sessions logged in with the old
// secret are disconnected by every bridge instance (they watch the bucket).
func (i *Issuer) Issue(ctx context.Context, cmd mqttapi.CredentialsCommand) (mqttapi.CredentialsReply, error) {
	var errs []problem.FieldError
	if err := events.ValidateID(cmd.DeviceID); err != nil {
		errs = append(errs, problem.FieldError{Field: "deviceId", Detail: err.Error()})
	} else if strings.HasPrefix(cmd.DeviceID, events.DispatchAggregateID("")) {
		errs = append(errs, problem.FieldError{Field: "deviceId", Detail: "is reserved for dispatch queues"})
	}
	if cmd.Kind != mqttapi.KindDriver && cmd.Kind != mqttapi.KindKitchen {
		errs = append(errs, problem.FieldError{Field: "kind", Detail: "must be driver or kitchen"})
	}
	if len(errs) > 0 {
		return mqttapi.CredentialsReply{}, problem.Validation(errs...)
	}
	known, err := i.exists(ctx, cmd.Kind, cmd.DeviceID)
	if err != nil {
		return mqttapi.CredentialsReply{}, err
	}
	if !known {
		return mqttapi.CredentialsReply{}, ErrDeviceNotFound
	}
	return i.issue(ctx, cmd.Kind, cmd.DeviceID, cmd.CorrelationID)
}

func (i *Issuer) issue(ctx context.Context, kind, id, correlationID string) (mqttapi.CredentialsReply, error) {
	secret, rev, at, err := i.b.creds.Issue(ctx, kind, id)
	if err != nil {
		return mqttapi.CredentialsReply{}, err
	}
	i.b.log.Info("device credentials issued; previous secret revoked", "device_id", id, "kind", kind, "revision", rev, "correlation_id", correlationID)
	pub, sub := device.Topics(device.Identity{Kind: kind, ID: id})
	return mqttapi.CredentialsReply{DeviceID: id, Kind: kind, Username: id, Secret: secret, IssuedAt: at, Revision: rev, Publish: pub, Subscribe: sub}, nil
}

// exists reports whether the platform knows the device: a kitchen is a
// restaurant of the catalogue; a driver is in the catalogue or registered
// on DRIVERS.
func (i *Issuer) exists(ctx context.Context, kind, id string) (bool, error) {
	if kind == mqttapi.KindKitchen {
		_, ok := i.catalog.Restaurant(id)
		return ok, nil
	}
	if i.inCatalog(id) {
		return true, nil
	}
	// Ask the stream leader: a replica that has not applied a driver
	// registered a moment ago would make it look unknown.
	seq, err := i.drivers.LastSeqFromLeader(ctx, id)
	if err != nil {
		return false, errors.Join(eventstore.ErrUnavailable, err)
	}
	return seq > 0, nil
}

func (i *Issuer) inCatalog(driverID string) bool {
	for _, r := range i.catalog.Restaurants {
		if slices.ContainsFunc(r.Drivers, func(d catalog.Driver) bool { return d.ID == driverID }) {
			return true
		}
	}
	return false
}

// SeedDemo issues credentials for every kitchen and driver of the
// catalogue and returns device id → secret, for `pizza dev` to print.
func (i *Issuer) SeedDemo(ctx context.Context) (map[string]string, error) {
	out := map[string]string{}
	for _, r := range i.catalog.Restaurants {
		rep, err := i.issue(ctx, mqttapi.KindKitchen, r.ID, "seed")
		if err != nil {
			return nil, err
		}
		out[r.ID] = rep.Secret
		for _, d := range r.Drivers {
			rep, err := i.issue(ctx, mqttapi.KindDriver, d.ID, "seed")
			if err != nil {
				return nil, err
			}
			out[d.ID] = rep.Secret
		}
	}
	return out, nil
}

// EdgeProblem is ToProblem in the shape service.Endpoints expects.
func EdgeProblem(err error, _ any) *problem.Problem { return ToProblem(err) }

// ToProblem maps the bridge's errors to the problem the caller gets.
func ToProblem(err error) *problem.Problem {
	var p *problem.Problem
	switch {
	case errors.As(err, &p):
		return p
	case errors.Is(err, ErrDeviceNotFound):
		nf := problem.NotFound("Device")
		nf.Detail = "no driver or kitchen with this id"
		return nf
	case errors.Is(err, ErrKindConflict):
		return problem.Conflict(err.Error())
	case errors.Is(err, ErrCredentialsUnavailable), errors.Is(err, eventstore.ErrUnavailable), errors.Is(err, context.DeadlineExceeded):
		return &problem.Problem{Type: problem.TypeUnavailable, Title: "The credential store is unavailable", Status: 503, Detail: "retry the request"}
	default:
		return &problem.Problem{Type: problem.TypeInternal, Title: "Internal error", Status: 500}
	}
}
