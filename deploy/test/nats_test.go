package deploytest

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	natsserver "github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// NATS users and permissions (k8s/base/nats/authorization.conf): one user
// per service, allowed to publish only its own subjects, and one for the
// operators' tools. The configuration is read by nats-server's own parser
// from the ConfigMap the overlay builds, checked against the rules below,
// and loaded into a real server to show that the server enforces them.

// natsPasswordKey is the key of the Secret nats-credentials that holds a
// service's NATS password; its NATS user is named after the service.
func natsPasswordKey(service string) string { return service + "-password" }

// Keys of nats-credentials for the operators' tools user (name, password).
const (
	operatorUserKey     = "user"
	operatorPasswordKey = "password"
)

// secretValue is the value the tests give a key of nats-credentials.
func secretValue(key string) string { return "secret-" + key }

// logSpace is a part of the subject space a stream or a key-value bucket
// captures, and a user that may publish there. A space listed twice has two
// writers; no one else may publish there.
type logSpace struct{ space, owner string }

var logSpaces = []logSpace{
	{"orders.>", "orders"},
	{"inventory.>", "inventory"},
	{"kitchen.>", "kitchen"},
	{"drivers.>", "drivers"},
	{"telemetry.drivers.>", "drivers"},     // position fixes sent over HTTP (svc.drivers.location)
	{"telemetry.drivers.>", "mqttbridge"},  // position fixes from the phones (ADR 0019)
	{"telemetry.ovens.>", "mqttbridge"},    // oven readings
	{"telemetry.kitchens.>", "mqttbridge"}, // kitchen alerts
	{"$KV.PII.>", "orders"},                // the personal-data vault
	{"$KV.DEVICE_CREDENTIALS.>", "mqttbridge"},
	// partition leases of the partitioned consumers (partitionedDurables)
	{"$KV.partitions_ORDERS_inventory-orders.>", "inventory"},
	{"$KV.partitions_KITCHEN_inventory-kitchen.>", "inventory"},
	{"$KV.partitions_INVENTORY_orders-saga-inventory.>", "orders"},
	{"$KV.partitions_KITCHEN_orders-saga-kitchen.>", "orders"},
	{"$KV.partitions_DRIVERS_orders-saga-drivers.>", "orders"},
	{"$KV.partitions_INVENTORY_kitchen-inventory.>", "kitchen"},
	{"$KV.partitions_ORDERS_kitchen-orders.>", "kitchen"},
	{"$KV.partitions_KITCHEN_drivers-kitchen.>", "drivers"},
	{"$KV.partitions_ORDERS_drivers-orders.>", "drivers"},
	// the lease of the kitchen's scheduler, scaled out (leaderRoles)
	{"$KV.leader_kitchen-scheduler.>", "kitchen"},
}

// capturedSpaces are the subjects the streams and buckets store: whoever
// publishes there writes into the log.
var capturedSpaces = []string{"orders.>", "inventory.>", "kitchen.>", "drivers.>", "telemetry.>", "$KV.>"}

// Who may create and update each stream's configuration (the JetStream API
// is otherwise a way around subject permissions). Every service provisions
// its own stream with TELEMETRY and DEADLETTER (eventstore.Provision); the
// orders service provisions all four domain streams because its saga reads
// the other three (services/orders/orders.go).
var provisioners = map[string][]string{
	"ORDERS":                {"orders"},
	"INVENTORY":             {"orders", "inventory"},
	"KITCHEN":               {"orders", "kitchen"},
	"DRIVERS":               {"orders", "drivers"},
	"TELEMETRY":             {"orders", "inventory", "kitchen", "drivers", "mqttbridge"},
	"DEADLETTER":            {"orders", "inventory", "kitchen", "drivers", "mqttbridge"},
	"KV_PII":                {"orders"},
	"KV_DEVICE_CREDENTIALS": {"mqttbridge"},

	"KV_partitions_ORDERS_inventory-orders":         {"inventory"},
	"KV_partitions_KITCHEN_inventory-kitchen":       {"inventory"},
	"KV_partitions_INVENTORY_orders-saga-inventory": {"orders"},
	"KV_partitions_KITCHEN_orders-saga-kitchen":     {"orders"},
	"KV_partitions_DRIVERS_orders-saga-drivers":     {"orders"},
	"KV_partitions_INVENTORY_kitchen-inventory":     {"kitchen"},
	"KV_partitions_ORDERS_kitchen-orders":           {"kitchen"},
	"KV_partitions_KITCHEN_drivers-kitchen":         {"drivers"},
	"KV_partitions_ORDERS_drivers-orders":           {"drivers"},
	"KV_leader_kitchen-scheduler":                   {"kitchen"},
}

// What each user reads, from the code: durable consumers, projectors and
// other ordered consumers, Store.Load, direct gets, key-value gets and
// watches. The operator reads the six streams, never the buckets.
var reads = map[string][]string{
	"orders": {"ORDERS", "INVENTORY", "KITCHEN", "DRIVERS", "KV_PII",
		"KV_partitions_INVENTORY_orders-saga-inventory", "KV_partitions_KITCHEN_orders-saga-kitchen", "KV_partitions_DRIVERS_orders-saga-drivers"},
	"inventory": {"INVENTORY", "ORDERS", "KITCHEN", "KV_partitions_ORDERS_inventory-orders", "KV_partitions_KITCHEN_inventory-kitchen"},
	"kitchen": {"KITCHEN", "INVENTORY", "ORDERS",
		"KV_partitions_INVENTORY_kitchen-inventory", "KV_partitions_ORDERS_kitchen-orders", "KV_leader_kitchen-scheduler"},
	"drivers":    {"DRIVERS", "ORDERS", "KITCHEN", "TELEMETRY", "KV_partitions_KITCHEN_drivers-kitchen", "KV_partitions_ORDERS_drivers-orders"},
	"gateway":    nil, // only STREAM.INFO.ORDERS, for /readyz
	"mqttbridge": {"TELEMETRY", "DRIVERS", "KV_DEVICE_CREDENTIALS"},
	"operator":   {"ORDERS", "INVENTORY", "KITCHEN", "DRIVERS", "TELEMETRY", "DEADLETTER"},
}

// The durable consumers that run partitioned with --partitions > 0
// (eventstore.ConsumeScaled, docs/scaling.md), per user: durable D on
// stream S becomes the consumers D-p<i>of<P> on S, coordinated through the
// bucket partitions_<S>_<D>, whose owner unpins and resets them
// ($JS.API.CONSUMER.UNPIN|RESET.<S>.>). The mqttbridge has no durable
// (each instance follows DRIVERS with an ordered consumer).
type partitionedDurable struct{ stream, durable string }

var partitionedDurables = map[string][]partitionedDurable{
	"orders":    {{"INVENTORY", "orders-saga-inventory"}, {"KITCHEN", "orders-saga-kitchen"}, {"DRIVERS", "orders-saga-drivers"}},
	"inventory": {{"ORDERS", "inventory-orders"}, {"KITCHEN", "inventory-kitchen"}},
	"kitchen":   {{"INVENTORY", "kitchen-inventory"}, {"ORDERS", "kitchen-orders"}},
	"drivers":   {{"KITCHEN", "drivers-kitchen"}, {"ORDERS", "drivers-orders"}},
}

// bucket is eventstore.PartitionBucket: the durable's lease bucket.
func (p partitionedDurable) bucket() string { return "partitions_" + p.stream + "_" + p.durable }

// Roles one instance at a time holds when scaled out (eventstore.Lead),
// per user; the lease is the bucket leader_<role>.
var leaderRoles = map[string][]string{
	"kitchen": {"kitchen-scheduler"},
}

// partitionedStreams are the streams on whose consumers role may call
// UNPIN and RESET.
func partitionedStreams(role string) []string {
	var out []string
	for _, p := range partitionedDurables[role] {
		out = append(out, p.stream)
	}
	return out
}

// The commands each user sends (svc.<service>.<command>).
var commands = map[string][]string{
	"gateway":    {"svc.orders.place", "region.r1.svc.orders.place", "svc.orders.cancel", "svc.inventory.restock", "svc.kitchen.chef-break", "svc.drivers.register", "svc.mqttbridge.credentials"},
	"mqttbridge": {"svc.drivers.location", "svc.drivers.status"},
}

// Services that answer commands over nats.go/micro.
var responders = []string{"orders", "inventory", "kitchen", "drivers", "mqttbridge"}

// Services with durable consumers (eventstore.Consume).
var consumers = []string{"orders", "inventory", "kitchen", "drivers", "mqttbridge"}

// sample turns a subject filter into a subject it matches.
func sample(filter string) string {
	return strings.ReplaceAll(strings.ReplaceAll(filter, ">", "x1.y1"), "*", "x1")
}

// natsConfig is nats.conf as the server reads it in a pod of the StatefulSet.
type natsConfig struct {
	opts *natsserver.Options
	// operator is the name of the operators' user (key user of the Secret).
	operator string
	// account is the account of the services' and operators' users: ""
	// for the server's global account (users of authorization.conf), the
	// region's REGION_<NAME> in a region's overlay.
	account string
	// users are the users of that account: the ones the rules below apply
	// to. Other accounts' users (GLOBAL, SYS) are checked by region_test.go.
	users []*natsserver.User
}

// loadNATSConfig writes the NATS ConfigMap to a directory as the pod
// mounts it, fills the container's environment as Kubernetes would (the
// pod name; secretValue for every key of a Secret) and parses nats.conf
// with nats-server's parser.
func loadNATSConfig(t *testing.T, m *manifests) *natsConfig {
	t.Helper()
	ss := statefulSet(t, m, "nats")
	spec := ss.Spec.Template.Spec
	c := spec.Containers[0]
	cm := findConfigMapByVolume(t, m, spec, "/etc/nats-config", c)
	dir := t.TempDir()
	for name, data := range cm.Data {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	for _, e := range c.Env {
		switch {
		case e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil:
			t.Setenv(e.Name, secretValue(e.ValueFrom.SecretKeyRef.Key))
		case e.ValueFrom != nil && e.ValueFrom.FieldRef != nil && e.ValueFrom.FieldRef.FieldPath == "metadata.name":
			t.Setenv(e.Name, "nats-0")
		case e.ValueFrom != nil && e.ValueFrom.ConfigMapKeyRef != nil:
			ref := e.ValueFrom.ConfigMapKeyRef
			cm := findConfigMap(m, ref.Name)
			if cm == nil {
				t.Fatalf("%s: env %s refers to ConfigMap %s, which is not in the output", m.overlay, e.Name, ref.Name)
			}
			v, ok := cm.Data[ref.Key]
			if !ok {
				t.Fatalf("%s: env %s refers to key %s of ConfigMap %s, which it lacks", m.overlay, e.Name, ref.Key, ref.Name)
			}
			t.Setenv(e.Name, v)
		case e.ValueFrom == nil:
			t.Setenv(e.Name, varRef.ReplaceAllStringFunc(e.Value, func(ref string) string {
				return os.Getenv(varRef.FindStringSubmatch(ref)[1])
			}))
		}
	}
	opts, err := natsserver.ProcessConfigFile(filepath.Join(dir, "nats.conf"))
	if err != nil {
		t.Fatalf("%s: nats-server rejects nats.conf: %v", m.overlay, err)
	}
	cfg := &natsConfig{opts: opts, operator: secretValue(operatorUserKey)}
	// The services' account is the one of the orders service's user.
	for _, u := range opts.Users {
		if u.Username == "orders" {
			cfg.account = userAccount(u)
		}
	}
	for _, u := range opts.Users {
		if userAccount(u) == cfg.account {
			cfg.users = append(cfg.users, u)
		}
	}
	return cfg
}

// userAccount is the name of the account a user is declared in ("": the
// server's global account).
func userAccount(u *natsserver.User) string {
	if u.Account == nil {
		return ""
	}
	return u.Account.Name
}

// user returns a user of the configuration by name ("operator" for the
// operators' user, whatever its name).
func (c *natsConfig) user(name string) *natsserver.User {
	if name == "operator" {
		name = c.operator
	}
	for _, u := range c.users {
		if u.Username == name {
			return u
		}
	}
	return nil
}

// role is the name the rules use for a user.
func (c *natsConfig) role(u *natsserver.User) string {
	if u.Username == c.operator {
		return "operator"
	}
	return u.Username
}

// allowed applies a subject permission the way nats-server does: no
// permission or no allow list allows everything, then deny wins.
func allowed(p *natsserver.SubjectPermission, subject string) bool {
	if p == nil {
		return true
	}
	ok := p.Allow == nil
	for _, a := range p.Allow {
		ok = ok || natsserver.SubjectMatchesFilter(subject, a)
	}
	for _, d := range p.Deny {
		ok = ok && !natsserver.SubjectMatchesFilter(subject, d)
	}
	return ok
}

func canPublish(u *natsserver.User, subject string) bool {
	return u.Permissions == nil || allowed(u.Permissions.Publish, subject)
}

func canSubscribe(u *natsserver.User, subject string) bool {
	return u.Permissions == nil || allowed(u.Permissions.Subscribe, subject)
}

// checkNATSUsers: every service connects as its own user, and nats.conf
// holds every user to the rules.
func checkNATSUsers(t *testing.T, m *manifests, cfg *natsConfig) {
	id := m.overlay + ": nats.conf"
	opts := cfg.opts
	if opts.Username != "" || opts.Authorization != "" || opts.NoAuthUser != "" || len(opts.Nkeys) > 0 {
		t.Errorf("%s: clients authenticate as the users of authorization.conf only (no single user, token, default user or nkeys)", id)
	}
	want := append(serviceModules(t), "operator")
	var got []string
	for _, u := range cfg.users {
		got = append(got, cfg.role(u))
	}
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("%s: users %v, want one per service and the operators' (%v)", id, got, want)
	}
	// Each user's password is its own key of nats-credentials.
	for _, u := range cfg.users {
		key := natsPasswordKey(u.Username)
		if cfg.role(u) == "operator" {
			key = operatorPasswordKey
		}
		if u.Password != secretValue(key) {
			t.Errorf("%s: the password of %s must come from key %s of nats-credentials", id, cfg.role(u), key)
		}
	}
	// Each Deployment connects as the user whose password it holds: its own.
	for _, d := range m.deployments {
		c := d.Spec.Template.Spec.Containers[0]
		user, pw := env(c, "NATS_USER"), env(c, "NATS_PASSWORD")
		if user == nil || pw == nil || pw.ValueFrom == nil || pw.ValueFrom.SecretKeyRef == nil {
			t.Errorf("%s: %s has no NATS_USER and NATS_PASSWORD (from nats-credentials)", id, d.Name)
			continue
		}
		u := cfg.user(user.Value)
		if user.Value != d.Name || u == nil || u.Password != secretValue(pw.ValueFrom.SecretKeyRef.Key) {
			t.Errorf("%s: %s connects as %q with key %s of nats-credentials, which is not its own NATS user", id, d.Name, user.Value, pw.ValueFrom.SecretKeyRef.Key)
		}
	}
	for _, p := range natsPermissionProblems(cfg) {
		t.Errorf("%s: %s", id, p)
	}
}

// natsPermissionProblems checks every user against the rules and returns
// what breaks them.
func natsPermissionProblems(cfg *natsConfig) []string {
	var out []string
	bad := func(format string, args ...any) { out = append(out, fmt.Sprintf(format, args...)) }
	for _, u := range cfg.users {
		role := cfg.role(u)
		if u.Permissions == nil || u.Permissions.Publish == nil || u.Permissions.Subscribe == nil ||
			u.Permissions.Publish.Allow == nil || u.Permissions.Subscribe.Allow == nil {
			bad("%s: needs publish and subscribe allow lists (without them it may do anything)", role)
			continue
		}
		// Into the log only where it owns the subjects.
		for _, p := range u.Permissions.Publish.Allow {
			for _, space := range capturedSpaces {
				if !natsserver.SubjectsCollide(p, space) {
					continue
				}
				owned := slices.ContainsFunc(logSpaces, func(s logSpace) bool {
					return s.owner == role && natsserver.SubjectMatchesFilter(p, s.space)
				})
				if !owned {
					bad("%s may publish %q, which reaches subjects of %s it does not own", role, p, space)
				}
			}
		}
		for _, s := range logSpaces {
			mine := slices.Contains(logSpaces, logSpace{s.space, role})
			if can := canPublish(u, sample(s.space)); mine != can {
				bad("%s: publish on %s (owner %s) allowed=%t", role, s.space, s.owner, can)
			}
		}
		// The log is read through JetStream, never by core subscriptions:
		// such interest would also let a push consumer deliver there.
		for _, p := range u.Permissions.Subscribe.Allow {
			for _, space := range capturedSpaces {
				if natsserver.SubjectsCollide(p, space) {
					bad("%s may subscribe to %q, which overlaps the log's %s", role, p, space)
				}
			}
		}
		// Management of streams and buckets: only who provisions them; no
		// deletion, no purge (the operators' user: handled dead letters).
		for stream, who := range provisioners {
			for _, op := range []string{"CREATE", "UPDATE"} {
				subj := "$JS.API.STREAM." + op + "." + stream
				if mine, can := slices.Contains(who, role), canPublish(u, subj); mine != can {
					bad("%s: %s allowed=%t, want %t", role, subj, can, mine)
				}
			}
			for _, op := range []string{"STREAM.DELETE", "STREAM.PURGE", "STREAM.MSG.DELETE", "STREAM.RESTORE", "STREAM.SNAPSHOT", "STREAM.LEADER.STEPDOWN"} {
				subj := "$JS.API." + op + "." + stream
				may := role == "operator" && stream == "DEADLETTER" && (op == "STREAM.PURGE" || op == "STREAM.MSG.DELETE")
				if canPublish(u, subj) != may {
					bad("%s: %s allowed=%t", role, subj, !may)
				}
			}
		}
		for _, subj := range []string{"$JS.API.ACCOUNT.PURGE.x1", "$JS.API.SERVER.REMOVE", "$JS.API.STREAM.CREATE.OTHER", "$JS.API.CONSUMER.CREATE.OTHER.c1"} {
			if canPublish(u, subj) {
				bad("%s may publish %s", role, subj)
			}
		}
		// What it reads, and nothing else: the buckets stay private.
		for _, stream := range append(slices.Collect(maps.Keys(provisioners)), "OTHER") {
			reader := slices.Contains(reads[role], stream)
			for _, subj := range []string{
				"$JS.API.CONSUMER.CREATE." + stream + ".c1", "$JS.API.CONSUMER.CREATE." + stream + ".c1.x1.>",
				"$JS.API.CONSUMER.MSG.NEXT." + stream + ".c1", "$JS.API.CONSUMER.INFO." + stream + ".c1", "$JS.API.CONSUMER.DELETE." + stream + ".c1",
				"$JS.API.DIRECT.GET." + stream, "$JS.API.DIRECT.GET." + stream + ".x1.y1", "$JS.API.STREAM.MSG.GET." + stream,
				"$JS.ACK." + stream + ".c1.1.2.3.4.5", "$JS.ACK._.hash." + stream + ".c1.1.2.3.4.5.r.x",
			} {
				if can := canPublish(u, subj); can != reader {
					bad("%s: %s allowed=%t, want %t (reads %v)", role, subj, can, reader, reads[role])
				}
			}
			info := reader || slices.Contains(provisioners[stream], role) || role == "gateway" && stream == "ORDERS"
			if can := canPublish(u, "$JS.API.STREAM.INFO."+stream); can != info {
				bad("%s: $JS.API.STREAM.INFO.%s allowed=%t, want %t", role, stream, can, info)
			}
			// Unpinning and resetting consumers: only where it owns
			// partitions (a reset rewinds a consumer's delivery).
			owner := slices.Contains(partitionedStreams(role), stream)
			for _, op := range []string{"RESET", "UNPIN"} {
				subj := "$JS.API.CONSUMER." + op + "." + stream + ".c1-p0of8"
				if can := canPublish(u, subj); can != owner {
					bad("%s: %s allowed=%t, want %t (partitioned consumers on %v)", role, subj, can, owner, partitionedStreams(role))
				}
			}
		}
		// Requests and replies. Nobody publishes on another's inbox: a
		// responder answers only requests it received (allow_responses).
		if !canSubscribe(u, "_INBOX.x1.y1") {
			bad("%s cannot receive replies (subscribe _INBOX.>)", role)
		}
		if canPublish(u, "_INBOX.x1.y1") {
			bad("%s may publish on any inbox; answer through allow_responses instead", role)
		}
		responder := slices.Contains(responders, role)
		if (u.Permissions.Response != nil) != responder {
			bad("%s: allow_responses=%t, want %t (micro endpoints)", role, u.Permissions.Response != nil, responder)
		}
		// Its own command endpoints only (a queue subscription on another's
		// would take that service's commands); commands are sent by the
		// gateway (any) and the bridge (its list), by nobody else.
		for _, svc := range responders {
			mine := svc == role
			for _, subj := range []string{"svc." + svc + ".x1", "$SRV.INFO." + svc, "$SRV.STATS." + svc + ".id1"} {
				if can := canSubscribe(u, subj); can != mine {
					bad("%s: subscribe %s allowed=%t, want %t", role, subj, can, mine)
				}
			}
			if can := canPublish(u, "svc."+svc+".x1"); can != (role == "gateway") {
				bad("%s: publish svc.%s.x1 allowed=%t", role, svc, can)
			}
			// Another region's commands (imported under region.<home>.,
			// k8s/overlays/prod-<region>): the gateway's only.
			if can := canPublish(u, "region.r1.svc."+svc+".x1"); can != (role == "gateway") {
				bad("%s: publish region.r1.svc.%s.x1 allowed=%t", role, svc, can)
			}
		}
		for _, subj := range commands[role] {
			if !canPublish(u, subj) {
				bad("%s cannot send %s", role, subj)
			}
		}
		if responder && !canSubscribe(u, "$SRV.PING") {
			bad("%s does not answer service discovery ($SRV.PING)", role)
		}
		if slices.Contains(consumers, role) && !canSubscribe(u, "$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.ORDERS.c1") {
			bad("%s cannot park messages whose last delivery died with the process (max-deliveries advisories)", role)
		}
	}
	return out
}

// TestNATSLeaseTablesAgree: every lease bucket of partitionedDurables and
// leaderRoles is its user's alone in logSpaces, provisioners and reads,
// and those tables hold no other lease bucket.
func TestNATSLeaseTablesAgree(t *testing.T) {
	want := map[string]string{} // bucket -> user
	for role, ps := range partitionedDurables {
		for _, p := range ps {
			want[p.bucket()] = role
		}
	}
	for role, rs := range leaderRoles {
		for _, r := range rs {
			want["leader_"+r] = role
		}
	}
	isLease := func(bucket string) bool {
		return strings.HasPrefix(bucket, "partitions_") || strings.HasPrefix(bucket, "leader_")
	}
	for bucket, role := range want {
		if !slices.Contains(logSpaces, logSpace{"$KV." + bucket + ".>", role}) {
			t.Errorf("logSpaces: want $KV.%s.> owned by %s", bucket, role)
		}
		if got := provisioners["KV_"+bucket]; !slices.Equal(got, []string{role}) {
			t.Errorf("provisioners[KV_%s] = %v, want [%s]", bucket, got, role)
		}
		for r, streams := range reads {
			if got := slices.Contains(streams, "KV_"+bucket); got != (r == role) {
				t.Errorf("reads[%s] lists KV_%s: %t, want %t", r, bucket, got, r == role)
			}
		}
	}
	for _, s := range logSpaces {
		if b, ok := strings.CutPrefix(s.space, "$KV."); ok && isLease(strings.TrimSuffix(b, ".>")) && want[strings.TrimSuffix(b, ".>")] == "" {
			t.Errorf("logSpaces: %s is no bucket of partitionedDurables or leaderRoles", s.space)
		}
	}
	for stream := range provisioners {
		if b, ok := strings.CutPrefix(stream, "KV_"); ok && isLease(b) && want[b] == "" {
			t.Errorf("provisioners: %s is no bucket of partitionedDurables or leaderRoles", stream)
		}
	}
}

// TestNATSPermissionRulesCatchMistakes: the rules fail on the mistakes they
// exist for.
func TestNATSPermissionRulesCatchMistakes(t *testing.T) {
	dev := buildOverlay(t, "dev")
	pub := func(user, filter string) func(*natsConfig) {
		return func(cfg *natsConfig) { p := cfg.user(user).Permissions.Publish; p.Allow = append(p.Allow, filter) }
	}
	drop := func(user, filter string) func(*natsConfig) {
		return func(cfg *natsConfig) {
			p := cfg.user(user).Permissions.Publish
			p.Allow = slices.DeleteFunc(slices.Clone(p.Allow), func(a string) bool { return a == filter })
		}
	}
	sub := func(user, filter string) func(*natsConfig) {
		return func(cfg *natsConfig) { p := cfg.user(user).Permissions.Subscribe; p.Allow = append(p.Allow, filter) }
	}
	for name, mutate := range map[string]func(cfg *natsConfig){
		"kitchen publishes orders.>":           pub("kitchen", "orders.>"),
		"a service publishes everything":       pub("drivers", ">"),
		"the gateway writes driver positions":  pub("gateway", "telemetry.drivers.>"),
		"a service has no permissions":         func(cfg *natsConfig) { cfg.user("inventory").Permissions = nil },
		"the whole JetStream API":              pub("kitchen", "$JS.API.>"),
		"the gateway reads the PII bucket":     pub("gateway", "$JS.API.DIRECT.GET.KV_PII.>"),
		"replies to any inbox":                 pub("orders", "_INBOX.>"),
		"the bridge sends orders commands":     pub("mqttbridge", "svc.orders.>"),
		"kitchen sends to another region":      pub("kitchen", "region.*.svc.>"),
		"a core subscription on the log":       sub("operator", "orders.>"),
		"kitchen takes the orders' commands":   sub("kitchen", "svc.orders.>"),
		"drivers writes the kitchen's leases":  pub("drivers", "$KV.leader_kitchen-scheduler.>"),
		"orders reads the kitchen's leases":    pub("orders", "$JS.API.DIRECT.GET.KV_partitions_ORDERS_kitchen-orders.>"),
		"kitchen resets any consumer":          pub("kitchen", "$JS.API.CONSUMER.RESET.>"),
		"the bridge unpins consumers":          pub("mqttbridge", "$JS.API.CONSUMER.UNPIN.DRIVERS.>"),
		"the scheduler's lease is missing":     drop("kitchen", "$KV.leader_kitchen-scheduler.>"),
		"the saga cannot reset its partitions": drop("orders", "$JS.API.CONSUMER.RESET.DRIVERS.>"),
	} {
		t.Run(name, func(t *testing.T) {
			cfg := loadNATSConfig(t, dev)
			if p := natsPermissionProblems(cfg); len(p) > 0 {
				t.Fatalf("the shipped configuration already breaks the rules: %v", p)
			}
			mutate(cfg)
			if p := natsPermissionProblems(cfg); len(p) == 0 {
				t.Errorf("the rules accept: %s", name)
			}
		})
	}
}

// TestNATSPermissionsOnARealServer starts nats-server from the dev
// overlay's configuration (ports, store and cluster overridden) and shows
// with real connections that the server enforces the users' permissions.
func TestNATSPermissionsOnARealServer(t *testing.T) {
	s := startDevNATS(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	orders, kitchen, gateway := connectAs(t, s, "orders"), connectAs(t, s, "kitchen"), connectAs(t, s, "gateway")

	// Each service provisions its own stream, as at start.
	ordersStream := provision(ctx, t, orders, "ORDERS", "orders.>")
	provision(ctx, t, kitchen, "KITCHEN", "kitchen.>")

	// The kitchen appends to its own context...
	ack, err := kitchen.js.Publish(ctx, "kitchen.t1", []byte(`{}`))
	if err != nil || ack.Stream != "KITCHEN" {
		t.Fatalf("kitchen: append to kitchen.t1: %v %+v", err, ack)
	}
	// ...and nowhere else; nor may it touch the orders' stream or commands.
	for _, subj := range []string{"orders.t1", "inventory.t1", "$KV.PII.address.t1", "$JS.API.STREAM.UPDATE.ORDERS", "$JS.API.STREAM.DELETE.ORDERS",
		"$JS.API.STREAM.PURGE.KITCHEN", "svc.orders.place"} {
		kitchen.expectViolation(t, subj)
	}
	if info, err := ordersStream.Info(ctx); err != nil || info.State.Msgs != 0 {
		t.Fatalf("ORDERS holds %d messages after the kitchen's attempt (%v)", info.State.Msgs, err)
	}
	// The owner can write there: the stream was not refusing on its own.
	if ack, err := orders.js.Publish(ctx, "orders.t1", []byte(`{}`)); err != nil || ack.Stream != "ORDERS" {
		t.Fatalf("orders: append to orders.t1: %v", err)
	}

	// The gateway sends commands: with no orders service listening the
	// server answers "no responders", which it does only for a permitted
	// publish.
	if _, err := gateway.nc.Request("svc.orders.place", []byte(`{}`), 5*time.Second); !errors.Is(err, nats.ErrNoResponders) {
		t.Fatalf("gateway: request on svc.orders.place: want no responders, got %v", err)
	}
	// With the orders service listening, the reply comes back: a responder
	// may answer the requests it receives (allow_responses), and only those.
	sub, err := orders.nc.QueueSubscribe("svc.orders.place", "orders", func(m *nats.Msg) { _ = m.Respond([]byte(`{"ok":true}`)) })
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	if err := orders.nc.Flush(); err != nil {
		t.Fatal(err)
	}
	if reply, err := gateway.nc.Request("svc.orders.place", []byte(`{}`), 5*time.Second); err != nil || string(reply.Data) != `{"ok":true}` {
		t.Fatalf("gateway: request on svc.orders.place answered by orders: %v", err)
	}
	orders.expectViolation(t, "_INBOX.forged.reply")
	gateway.expectViolation(t, "orders.t2")
	kitchen.expectNoViolation(t)
	gateway.expectNoViolation(t)
}

// TestNATSPartitionsOnARealServer shows on a real server that each
// service's user can do what its partitioned consumers (--partitions) and
// the kitchen's scheduler election do with the partitionedDurables and
// leaderRoles (eventstore.ConsumeScaled, eventstore.Lead), and that no
// other user can write those buckets or reset consumers where it owns no
// partitions.
func TestNATSPartitionsOnARealServer(t *testing.T) {
	s := startDevNATS(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	roles := slices.Sorted(maps.Keys(partitionedDurables))
	for role := range leaderRoles {
		if !slices.Contains(roles, role) {
			roles = append(roles, role)
		}
	}
	clients := map[string]*natsClient{}
	for _, role := range roles {
		clients[role] = connectAs(t, s, role)
	}
	bridge := connectAs(t, s, "mqttbridge")
	// The orders service provisions the four domain streams (its saga
	// reads the other three).
	domainStreams := []string{"ORDERS", "INVENTORY", "KITCHEN", "DRIVERS"}
	orders := connectAs(t, s, "orders")
	for _, stream := range domainStreams {
		provision(ctx, t, orders, stream, strings.ToLower(stream)+".>")
	}

	for _, role := range roles {
		c := clients[role]
		for _, p := range partitionedDurables[role] {
			exerciseLeaseBucket(ctx, t, c, p.bucket(), "")
			// A partition consumer, pinned to one puller; its next owner
			// unpins and resets it (pkg/eventstore/partitioned.go).
			ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			defer cancel()
			name := p.durable + "-p0of8"
			if _, err := c.js.CreateConsumer(ctx, p.stream, jetstream.ConsumerConfig{
				Durable: name, AckPolicy: jetstream.AckAllPolicy, MaxDeliver: -1,
				PriorityPolicy: jetstream.PriorityPolicyPinned, PriorityGroups: []string{"owner"}, PinnedTTL: 10 * time.Second,
			}); err != nil {
				t.Fatalf("%s: create partition consumer %s on %s: %v%s", role, name, p.stream, err, c.why())
			}
			st, err := c.js.Stream(ctx, p.stream)
			if err != nil {
				t.Fatalf("%s: stream %s: %v%s", role, p.stream, err, c.why())
			}
			if err := st.UnpinConsumer(ctx, name, "owner"); err != nil {
				t.Fatalf("%s: unpin %s on %s: %v%s", role, name, p.stream, err, c.why())
			}
			if _, err := c.js.ResetConsumer(ctx, p.stream, name); err != nil {
				t.Fatalf("%s: reset %s on %s: %v%s", role, name, p.stream, err, c.why())
			}
			// The bridge partitions nothing: it may neither write the
			// leases nor reset the consumer.
			bridge.expectViolation(t, "$KV."+p.bucket()+".m.intruder")
			bridge.expectViolation(t, "$JS.API.CONSUMER.RESET."+p.stream+"."+name)
			bridge.expectViolation(t, "$JS.API.CONSUMER.UNPIN."+p.stream+"."+name)
		}
		for _, r := range leaderRoles[role] {
			exerciseLeaseBucket(ctx, t, c, "leader_"+r, "leader")
		}
		// No resets where the role owns no partitions.
		for _, stream := range domainStreams {
			if !slices.Contains(partitionedStreams(role), stream) {
				c.expectViolation(t, "$JS.API.CONSUMER.RESET."+stream+".c1-p0of8")
			}
		}
		// Nor writes into another role's leases.
		for _, other := range roles {
			if other == role {
				continue
			}
			for _, p := range partitionedDurables[other] {
				c.expectViolation(t, "$KV."+p.bucket()+".m.intruder")
			}
			for _, r := range leaderRoles[other] {
				c.expectViolation(t, "$KV.leader_"+r+".leader")
			}
		}
	}
	for _, role := range roles {
		clients[role].expectNoViolation(t)
	}
	bridge.expectNoViolation(t)
	orders.expectNoViolation(t)
}

// exerciseLeaseBucket does with bucket what the lease code does: create or
// update it at start (memory storage, TTL), take, read, renew and release
// a lease, watch the bucket (key watchKey; "" for all keys, as the
// partition members do, who also list the members), and answer a watcher's
// flow control. Any permission it lacks fails the test.
func exerciseLeaseBucket(ctx context.Context, t *testing.T, c *natsClient, bucket, watchKey string) {
	t.Helper()
	// A request the server refuses is dropped: it ends at this deadline.
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	cfg := jetstream.KeyValueConfig{Bucket: bucket, History: 1, TTL: 10 * time.Second, Storage: jetstream.MemoryStorage}
	if _, err := c.js.CreateOrUpdateKeyValue(ctx, cfg); err != nil {
		t.Fatalf("%s: create bucket %s: %v%s", c.user, bucket, err, c.why())
	}
	// Every start updates it.
	kv, err := c.js.CreateOrUpdateKeyValue(ctx, cfg)
	if err != nil {
		t.Fatalf("%s: update bucket %s: %v%s", c.user, bucket, err, c.why())
	}
	key := watchKey
	var w jetstream.KeyWatcher
	if watchKey == "" {
		key = "p.0"
		w, err = kv.WatchAll(ctx, jetstream.UpdatesOnly(), jetstream.MetaOnly())
	} else {
		w, err = kv.Watch(ctx, watchKey, jetstream.UpdatesOnly())
	}
	if err != nil {
		t.Fatalf("%s: watch %s: %v%s", c.user, bucket, err, c.why())
	}
	defer func() { _ = w.Stop() }()
	rev, err := kv.Create(ctx, key, []byte("member-a"))
	if err != nil {
		t.Fatalf("%s: take %s in %s: %v%s", c.user, key, bucket, err, c.why())
	}
	e, err := kv.Get(ctx, key)
	if err != nil || string(e.Value()) != "member-a" {
		t.Fatalf("%s: read %s in %s: %v%s", c.user, key, bucket, err, c.why())
	}
	if rev, err = kv.Update(ctx, key, []byte("member-a"), rev); err != nil {
		t.Fatalf("%s: renew %s in %s: %v%s", c.user, key, bucket, err, c.why())
	}
	if watchKey == "" {
		if _, err := kv.Put(ctx, "m.member-a", []byte(`{"partitions":8}`)); err != nil {
			t.Fatalf("%s: join %s: %v%s", c.user, bucket, err, c.why())
		}
		lister, err := kv.ListKeysFiltered(ctx, "m.*")
		if err != nil {
			t.Fatalf("%s: list members of %s: %v%s", c.user, bucket, err, c.why())
		}
		var members []string
		for k := range lister.Keys() {
			members = append(members, k)
		}
		if !slices.Equal(members, []string{"m.member-a"}) {
			t.Fatalf("%s: members of %s: %v", c.user, bucket, members)
		}
	}
	if err := kv.Delete(ctx, key, jetstream.LastRevision(rev)); err != nil {
		t.Fatalf("%s: release %s in %s: %v%s", c.user, key, bucket, err, c.why())
	}
	// The watcher (an ordered push consumer delivering to an inbox) sees
	// the writes; its consumer may start after the first ones, but not
	// after the release.
	for seen := false; !seen; {
		select {
		case u := <-w.Updates():
			if u != nil && u.Bucket() == bucket && (watchKey == "" || u.Key() == watchKey) {
				seen = true
			}
		case <-ctx.Done():
			t.Fatalf("%s: watch %s: no update%s", c.user, bucket, c.why())
		}
	}
	// Flow control replies of its watchers ($JS.FC.KV_<bucket>.>): the
	// server asks for them only under load, so publish one directly. The
	// violation that follows (not even the owner deletes the bucket) is the
	// first error the client gets only if the flow control was allowed.
	if err := c.nc.Publish("$JS.FC.KV_"+bucket+".c1.x1", nil); err != nil {
		t.Fatalf("%s: flow control on %s: %v%s", c.user, bucket, err, c.why())
	}
	c.expectViolation(t, "$JS.API.STREAM.DELETE.KV_"+bucket)
}

// startDevNATS starts nats-server from the dev overlay's configuration
// (ports, store and cluster overridden).
func startDevNATS(t *testing.T) *natsserver.Server {
	t.Helper()
	cfg := loadNATSConfig(t, buildOverlay(t, "dev"))
	opts := cfg.opts
	opts.ServerName = "permissions-test"
	opts.Host, opts.Port, opts.HTTPPort = "127.0.0.1", -1, 0
	opts.StoreDir = t.TempDir()
	opts.PidFile = ""
	opts.Cluster = natsserver.ClusterOpts{}
	opts.Routes = nil
	opts.NoLog, opts.NoSigs = true, true
	s, err := natsserver.NewServer(opts)
	if err != nil {
		t.Fatalf("nats-server: %v", err)
	}
	go s.Start()
	t.Cleanup(s.Shutdown)
	if !s.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats-server not ready")
	}
	return s
}

type natsClient struct {
	user string
	nc   *nats.Conn
	js   jetstream.JetStream
	errs chan error
}

// connectAs connects to s as a service's user, with the password the
// configuration gives it; asynchronous errors (permission violations) are
// collected.
func connectAs(t *testing.T, s *natsserver.Server, service string) *natsClient {
	t.Helper()
	c := &natsClient{user: service, errs: make(chan error, 64)}
	nc, err := nats.Connect(s.ClientURL(), nats.UserInfo(service, secretValue(natsPasswordKey(service))),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) { c.errs <- err }))
	if err != nil {
		t.Fatalf("connect as %s: %v", service, err)
	}
	t.Cleanup(nc.Close)
	if c.js, err = jetstream.New(nc); err != nil {
		t.Fatal(err)
	}
	c.nc = nc
	return c
}

func provision(ctx context.Context, t *testing.T, c *natsClient, name, subjects string) jetstream.Stream {
	t.Helper()
	st, err := c.js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{Name: name, Subjects: []string{subjects}, Storage: jetstream.FileStorage})
	if err != nil {
		t.Fatalf("%s: provision %s: %v", c.user, name, err)
	}
	return st
}

// expectViolation publishes on subject and waits for the server's
// permissions violation naming it.
func (c *natsClient) expectViolation(t *testing.T, subject string) {
	t.Helper()
	if err := c.nc.Publish(subject, []byte(`{}`)); err != nil {
		t.Fatalf("%s: publish %s: %v", c.user, subject, err)
	}
	if err := c.nc.Flush(); err != nil {
		t.Fatalf("%s: flush: %v", c.user, err)
	}
	deadline := time.After(5 * time.Second)
	for {
		select {
		case err := <-c.errs:
			if errors.Is(err, nats.ErrPermissionViolation) && strings.Contains(err.Error(), `"`+subject+`"`) {
				return
			}
			t.Fatalf("%s: publish on %s: unexpected error %v", c.user, subject, err)
		case <-deadline:
			t.Fatalf("%s: publish on %s was not refused", c.user, subject)
		}
	}
}

// why returns the asynchronous errors received so far (a permissions
// violation explains a request that timed out), for a failure message.
func (c *natsClient) why() string {
	var out string
	for {
		select {
		case err := <-c.errs:
			out += "; server: " + err.Error()
		default:
			return out
		}
	}
}

// expectNoViolation fails on any asynchronous error not consumed by
// expectViolation.
func (c *natsClient) expectNoViolation(t *testing.T) {
	t.Helper()
	if err := c.nc.Flush(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-c.errs:
		t.Errorf("%s: unexpected error %v", c.user, err)
	default:
	}
}
