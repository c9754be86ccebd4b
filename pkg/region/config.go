package region

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/nats-io/nats-server/v2/server"
)

// Credentials are the user a connection to one account authenticates as.
type Credentials struct {
	User     string
	Password string
}

// Addr is where one server listens.
type Addr struct {
	Host        string
	ClientPort  int
	ClusterPort int
	GatewayPort int
}

// Plan is everything needed to configure every server of a supercluster:
// the topology, the listen addresses, the credentials of each account and
// where each server stores JetStream data. The same Plan yields the same
// account and gateway configuration on every server, as the supercluster
// requires.
type Plan struct {
	Topology Topology
	// Servers holds each region's server addresses; len must equal the
	// region's Servers.
	Servers map[string][]Addr
	// GatewayAdvertise, per region, is the host:port the other regions dial
	// to reach it and that its servers advertise (a load balancer, or a
	// proxy in tests). Empty: the region's servers' own gateway addresses.
	GatewayAdvertise map[string]string
	// Users holds the credentials of every account (region accounts,
	// GLOBAL, SYS), keyed by account name.
	Users map[string]Credentials
	// StoreDir is the root of the JetStream stores; each server uses
	// StoreDir/<server name>.
	StoreDir string
	// MaxMemoryStore and MaxFileStore bound each server's JetStream
	// (bytes); zero lets the server size them from the machine.
	MaxMemoryStore int64
	MaxFileStore   int64
}

// NewPlan validates the topology and fills in credentials (random
// passwords) for every account. Addresses are left to the caller.
func NewPlan(t Topology, storeDir string) (*Plan, error) {
	if err := t.Validate(); err != nil {
		return nil, err
	}
	p := &Plan{Topology: t, Servers: map[string][]Addr{}, GatewayAdvertise: map[string]string{}, Users: map[string]Credentials{}, StoreDir: storeDir}
	accounts := []string{GlobalAccount, SystemAccount}
	for _, r := range t.Regions {
		accounts = append(accounts, AccountName(r.Name))
	}
	for _, a := range accounts {
		pw, err := randomSecret()
		if err != nil {
			return nil, err
		}
		p.Users[a] = Credentials{User: strings.ToLower(strings.ReplaceAll(a, "_", "-")), Password: pw}
	}
	return p, nil
}

func randomSecret() (string, error) {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("region: credentials: %w", err)
	}
	return hex.EncodeToString(b[:]), nil
}

// ServerName names server i (from 0) of a region: "<region>-<i+1>".
func ServerName(region string, i int) string { return region + "-" + strconv.Itoa(i+1) }

// RegionCredentials returns the credentials of a region's account.
func (p *Plan) RegionCredentials(region string) Credentials { return p.Users[AccountName(region)] }

// GlobalCredentials returns the credentials of the GLOBAL account.
func (p *Plan) GlobalCredentials() Credentials { return p.Users[GlobalAccount] }

func (p *Plan) check() error {
	for _, r := range p.Topology.Regions {
		if got := len(p.Servers[r.Name]); got != r.Servers {
			return fmt.Errorf("region %q: %d server addresses for %d servers", r.Name, got, r.Servers)
		}
	}
	for _, a := range append([]string{GlobalAccount, SystemAccount}, mapSlice(p.Topology.Names(), AccountName)...) {
		if c, ok := p.Users[a]; !ok || c.User == "" || c.Password == "" {
			return fmt.Errorf("region: no credentials for account %s", a)
		}
	}
	return nil
}

// Config returns the nats-server configuration of server i of a region.
func (p *Plan) Config(region string, i int) (string, error) {
	if err := p.check(); err != nil {
		return "", err
	}
	r, ok := p.Topology.Region(region)
	if !ok || i < 0 || i >= r.Servers {
		return "", fmt.Errorf("region: no server %d in region %q", i, region)
	}
	self := p.Servers[region][i]
	var b strings.Builder
	w := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	w("server_name: %s\n", q(ServerName(region, i)))
	w("listen: %s\n", q(hostPort(self.Host, self.ClientPort)))
	w("server_tags: [%s]\n", q(ServerTag(region)))
	w("jetstream {\n  store_dir: %s\n", q(filepath.Join(p.StoreDir, ServerName(region, i))))
	if p.MaxMemoryStore > 0 {
		w("  max_memory_store: %d\n", p.MaxMemoryStore)
	}
	if p.MaxFileStore > 0 {
		w("  max_file_store: %d\n", p.MaxFileStore)
	}
	w("}\n")
	// The region's cluster: every server routes to every server. The route
	// to itself is ignored by the server, but keeps a one-server region
	// valid: clustered JetStream refuses to start without configured routes.
	w("cluster {\n  name: %s\n  listen: %s\n  routes: [", q(region), q(hostPort(self.Host, self.ClusterPort)))
	routes := make([]string, 0, len(p.Servers[region]))
	for _, other := range p.Servers[region] {
		routes = append(routes, q("nats://"+hostPort(other.Host, other.ClusterPort)))
	}
	w(" %s ]\n}\n", strings.Join(routes, ", "))
	// Gateways to every other region.
	w("gateway {\n  name: %s\n  listen: %s\n", q(region), q(hostPort(self.Host, self.GatewayPort)))
	if adv := p.GatewayAdvertise[region]; adv != "" {
		w("  advertise: %s\n", q(adv))
	}
	w("  gateways: [\n")
	for _, other := range p.Topology.Regions {
		if other.Name == region {
			continue
		}
		urls := mapSlice(p.gatewayURLs(other.Name), q)
		w("    {name: %s, urls: [ %s ]}\n", q(other.Name), strings.Join(urls, ", "))
	}
	w("  ]\n}\n")
	b.WriteString(p.accountsConfig())
	return b.String(), nil
}

func (p *Plan) gatewayURLs(region string) []string {
	if adv := p.GatewayAdvertise[region]; adv != "" {
		return []string{"nats://" + adv}
	}
	var out []string
	for _, a := range p.Servers[region] {
		out = append(out, "nats://"+hostPort(a.Host, a.GatewayPort))
	}
	return out
}

// Global-view plumbing between a region's account and GLOBAL.

// SourceConsumer is the durable consumer on a region's ORDERS stream that
// feeds the GLOBAL account (durable sourcing).
func SourceConsumer(region string) string {
	return "GLOBAL_" + strings.TrimPrefix(AccountName(region), "REGION_")
}

// SourceConsumerOps are the consumer API operations GLOBAL may call on a
// region's source consumer: RESET (nats-server's durable sourcing), INFO
// and PAUSE (the source watch's repair, ADR 0020).
var SourceConsumerOps = []string{"RESET", "INFO", "PAUSE"}

// DeliverSubject is where a region's SourceConsumer pushes, exported to GLOBAL.
func DeliverSubject(region string) string { return "global.deliver." + region }

// APIPrefix is the prefix under which GLOBAL reaches a region's JetStream
// API (the parts it is allowed: resetting, reading and pausing its source
// consumer, and reading a message of its ORDERS stream for the source
// watch).
func APIPrefix(region string) string { return "$JS." + region + ".API" }

// accountsConfig renders the accounts: one per region (JetStream, commands
// exported to the other regions and imported from them under
// "region.<name>."), GLOBAL (JetStream, sourcing each region's ORDERS
// through a durable consumer), and SYS.
func (p *Plan) accountsConfig() string {
	var b strings.Builder
	w := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	regions := p.Topology.Names()
	w("system_account: %s\n", SystemAccount)
	w("accounts {\n")
	for _, r := range regions {
		acc := AccountName(r)
		others := make([]string, 0, len(regions)-1)
		for _, o := range regions {
			if o != r {
				others = append(others, AccountName(o))
			}
		}
		w("  %s {\n    jetstream: enabled\n", acc)
		w("    users: [ %s ]\n", user(p.Users[acc]))
		w("    exports: [\n")
		if len(others) > 0 {
			// Commands for this region's restaurants, from the other regions' gateways.
			w("      { service: %s, accounts: [%s] }\n", q(CommandSubjects), strings.Join(others, ", "))
		}
		// GLOBAL's durable source: reset (position) the source consumer,
		// receive its messages, and answer its flow control; the source
		// watch also reads and pauses that consumer to repair the source.
		for _, op := range SourceConsumerOps {
			w("      { service: %s, accounts: [%s] }\n", q(fmt.Sprintf("$JS.API.CONSUMER.%s.ORDERS.%s", op, SourceConsumer(r))), GlobalAccount)
		}
		w("      { stream: %s, accounts: [%s] }\n", q(DeliverSubject(r)), GlobalAccount)
		w("      { service: %s, accounts: [%s] }\n", q(fmt.Sprintf("$JS.FC.ORDERS.%s.>", SourceConsumer(r))), GlobalAccount)
		// GLOBAL's source watch reads the region's last order event.
		w("      { service: %s, accounts: [%s] }\n", q("$JS.API.STREAM.MSG.GET.ORDERS"), GlobalAccount)
		w("    ]\n")
		if len(others) > 0 {
			w("    imports: [\n")
			for _, o := range regions {
				if o != r {
					w("      { service: { account: %s, subject: %s }, to: %s }\n", AccountName(o), q(CommandSubjects), q(CommandPrefix(o)+CommandSubjects))
				}
			}
			w("    ]\n")
		}
		w("  }\n")
	}
	w("  %s {\n    jetstream: enabled\n    users: [ %s ]\n    imports: [\n", GlobalAccount, user(p.Users[GlobalAccount]))
	for _, r := range regions {
		acc := AccountName(r)
		for _, op := range SourceConsumerOps {
			w("      { service: { account: %s, subject: %s }, to: %s }\n", acc,
				q(fmt.Sprintf("$JS.API.CONSUMER.%s.ORDERS.%s", op, SourceConsumer(r))),
				q(fmt.Sprintf("%s.CONSUMER.%s.ORDERS.%s", APIPrefix(r), op, SourceConsumer(r))))
		}
		w("      { stream: { account: %s, subject: %s } }\n", acc, q(DeliverSubject(r)))
		w("      { service: { account: %s, subject: %s } }\n", acc, q(fmt.Sprintf("$JS.FC.ORDERS.%s.>", SourceConsumer(r))))
		w("      { service: { account: %s, subject: %s }, to: %s }\n", acc,
			q("$JS.API.STREAM.MSG.GET.ORDERS"), q(APIPrefix(r)+".STREAM.MSG.GET.ORDERS"))
	}
	w("    ]\n  }\n")
	w("  %s {\n    users: [ %s ]\n  }\n", SystemAccount, user(p.Users[SystemAccount]))
	w("}\n")
	return b.String()
}

// Options parses the configuration of server i of a region into
// nats-server options, ready for server.NewServer.
func (p *Plan) Options(region string, i int) (*server.Options, error) {
	cfg, err := p.Config(region, i)
	if err != nil {
		return nil, err
	}
	opts := &server.Options{}
	if err := opts.ProcessConfigString(cfg); err != nil {
		return nil, fmt.Errorf("region: server %s: %w", ServerName(region, i), err)
	}
	opts.NoSigs = true
	return opts, nil
}

func user(c Credentials) string {
	return fmt.Sprintf("{ user: %s, password: %s }", q(c.User), q(c.Password))
}

// q quotes a configuration string (JSON string syntax is valid there, and
// keeps '$' from being read as a variable).
func q(s string) string { return strconv.Quote(s) }

func hostPort(host string, port int) string {
	if host == "" {
		host = "127.0.0.1"
	}
	return net.JoinHostPort(host, strconv.Itoa(port))
}

func mapSlice(in []string, f func(string) string) []string {
	out := make([]string, len(in))
	for i, s := range in {
		out[i] = f(s)
	}
	return out
}

var errNoServers = errors.New("region: supercluster has no running server in the region")
