package cluster

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
)

// network is the node's network namespace and its link to the host. Slot n
// picks the addresses, so that two clusters on one machine do not collide:
//
//	veth        10.250.n.0/30   host end .1 (apiserver), node end .2 (kubelet, CoreDNS)
//	pods        10.251.n.0/24   the CNI bridge's subnet
//	services    10.252.n.0/24   ClusterIPs; .1 is the kubernetes Service
//
// The namespace has no default route: pods reach the host end and nothing
// else. The host reaches pods and Services through two routes via the node
// end. Forwarding is on inside the namespace only (the bridge plugin turns
// it on where it runs, which is why the node is not in the host's).
type network struct {
	Name        string // the namespace, /run/netns/<Name>
	HostIP      net.IP
	NodeIP      net.IP
	PodCIDR     *net.IPNet
	ServiceCIDR *net.IPNet
	hostVeth    string
}

const maxSlots = 64

// createNetwork takes the first free slot: one whose namespace name is
// free (`ip netns add` fails on a taken one, so two runs cannot take the
// same) and whose subnets no host route overlaps.
func createNetwork() (*network, error) {
	routes, err := hostRoutes()
	if err != nil {
		return nil, err
	}
	for slot := 0; slot < maxSlots; slot++ {
		n := newNetwork(slot)
		if overlaps(routes, n.subnets()...) {
			continue
		}
		if err := exec.Command("ip", "netns", "add", n.Name).Run(); err != nil {
			continue // taken by another run, or a leftover of a killed one
		}
		if err := n.setUp(); err != nil {
			return nil, errors.Join(err, n.remove())
		}
		return n, nil
	}
	return nil, fmt.Errorf("no free cluster network: network namespaces outpost-cluster-0..%d are all taken or their subnets routed (see `ip netns list`, `ip route`)", maxSlots-1)
}

func newNetwork(slot int) *network {
	cidr := func(s string) *net.IPNet {
		_, n, _ := net.ParseCIDR(s)
		return n
	}
	return &network{
		Name:        fmt.Sprintf("outpost-cluster-%d", slot),
		HostIP:      net.IPv4(10, 250, byte(slot), 1).To4(),
		NodeIP:      net.IPv4(10, 250, byte(slot), 2).To4(),
		PodCIDR:     cidr(fmt.Sprintf("10.251.%d.0/24", slot)),
		ServiceCIDR: cidr(fmt.Sprintf("10.252.%d.0/24", slot)),
		hostVeth:    fmt.Sprintf("opc%dh", slot),
	}
}

func (n *network) subnets() []*net.IPNet {
	veth := &net.IPNet{IP: n.HostIP.Mask(net.CIDRMask(30, 32)), Mask: net.CIDRMask(30, 32)}
	return []*net.IPNet{veth, n.PodCIDR, n.ServiceCIDR}
}

// Path is the namespace's file, for nsenter --net.
func (n *network) Path() string { return "/run/netns/" + n.Name }

// PodGateway is the bridge's address, the pods' gateway.
func (n *network) PodGateway() net.IP { return offset(n.PodCIDR, 1) }

// KubernetesServiceIP is the ClusterIP of the kubernetes Service.
func (n *network) KubernetesServiceIP() net.IP { return offset(n.ServiceCIDR, 1) }

func offset(n *net.IPNet, i byte) net.IP {
	ip := n.IP.To4()
	return net.IPv4(ip[0], ip[1], ip[2], ip[3]+i).To4()
}

// Command runs name inside the namespace. It uses nsenter, not `ip netns
// exec`, which remounts /sys and so hides the cgroup mounts from kubelet.
func (n *network) Command(name string, args ...string) *exec.Cmd {
	return exec.Command("nsenter", append([]string{"--net=" + n.Path(), "--", name}, args...)...)
}

func (n *network) setUp() error {
	nodeVeth := strings.TrimSuffix(n.hostVeth, "h") + "n"
	steps := [][]string{
		{"ip", "link", "add", n.hostVeth, "type", "veth", "peer", "name", nodeVeth, "netns", n.Name},
		{"ip", "addr", "add", n.HostIP.String() + "/30", "dev", n.hostVeth},
		{"ip", "link", "set", n.hostVeth, "up"},
		{"ip", "-n", n.Name, "addr", "add", n.NodeIP.String() + "/30", "dev", nodeVeth},
		{"ip", "-n", n.Name, "link", "set", nodeVeth, "up"},
		{"ip", "-n", n.Name, "link", "set", "lo", "up"},
		{"ip", "route", "add", n.PodCIDR.String(), "via", n.NodeIP.String(), "dev", n.hostVeth},
		{"ip", "route", "add", n.ServiceCIDR.String(), "via", n.NodeIP.String(), "dev", n.hostVeth},
	}
	for _, s := range steps {
		if out, err := exec.Command(s[0], s[1:]...).CombinedOutput(); err != nil {
			return fmt.Errorf("network %s: %s: %w: %s", n.Name, strings.Join(s, " "), err, out)
		}
	}
	// Inside the namespace only: forward between the veth and the bridge
	// (host to pods and Services), and pass bridged traffic through
	// iptables, or a pod's reply to another pod on the bridge that reached
	// it through a Service skips kube-proxy's reverse NAT.
	for _, key := range []string{"net/ipv4/ip_forward", "net/bridge/bridge-nf-call-iptables"} {
		cmd := n.Command("sh", "-c", "echo 1 > /proc/sys/"+key)
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("network %s: set %s: %w: %s", n.Name, key, err, out)
		}
	}
	return nil
}

// remove deletes the veth pair (its routes go with it) and the namespace.
func (n *network) remove() error {
	var errs []error
	if _, err := net.InterfaceByName(n.hostVeth); err == nil {
		if out, err := exec.Command("ip", "link", "del", n.hostVeth).CombinedOutput(); err != nil {
			errs = append(errs, fmt.Errorf("delete %s: %w: %s", n.hostVeth, err, out))
		}
	}
	if out, err := exec.Command("ip", "netns", "del", n.Name).CombinedOutput(); err != nil {
		errs = append(errs, fmt.Errorf("delete network namespace %s: %w: %s", n.Name, err, out))
	}
	return errors.Join(errs...)
}

// hostRoutes lists the destinations of the host's IPv4 routes, except
// the default route.
func hostRoutes() ([]*net.IPNet, error) {
	out, err := exec.Command("ip", "-4", "-o", "route", "show").Output()
	if err != nil {
		return nil, fmt.Errorf("ip route: %w", err)
	}
	var routes []*net.IPNet
	for _, line := range strings.Split(string(out), "\n") {
		dst, _, _ := strings.Cut(strings.TrimSpace(line), " ")
		if dst == "" || dst == "default" {
			continue
		}
		if !strings.Contains(dst, "/") {
			dst += "/32"
		}
		if _, n, err := net.ParseCIDR(dst); err == nil {
			routes = append(routes, n)
		}
	}
	return routes, nil
}

func overlaps(routes []*net.IPNet, subnets ...*net.IPNet) bool {
	for _, r := range routes {
		for _, s := range subnets {
			if r.Contains(s.IP) || s.Contains(r.IP) {
				return true
			}
		}
	}
	return false
}

// hostIPForward reads the host's net.ipv4.ip_forward, which the cluster
// must leave as it found it.
func hostIPForward() (string, error) {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_forward")
	return strings.TrimSpace(string(b)), err
}
