// Command vipctl is the lab e2e's driver of lvsd's VIP package
// (vip_test.go), run inside a node:
//
//	vipctl check|add|remove|announce IFACE ADDRESS/PREFIX
//
// It prints "ok", or the package's error and exits 1.
package main

import (
	"fmt"
	"net/netip"
	"os"

	"github.com/openssi/openssi/daemons/lvsd/vip"
)

func main() {
	if len(os.Args) != 4 {
		fmt.Fprintln(os.Stderr, "usage: vipctl check|add|remove|announce IFACE ADDRESS/PREFIX")
		os.Exit(2)
	}
	ifname := os.Args[2]
	p, err := netip.ParsePrefix(os.Args[3])
	if err != nil {
		fmt.Println("vipctl:", err)
		os.Exit(2)
	}
	switch os.Args[1] {
	case "check":
		err = vip.Check(ifname, p)
	case "add":
		err = vip.Add(ifname, p)
	case "remove":
		err = vip.Remove(ifname, p)
	case "announce":
		err = vip.Announce(ifname, p.Addr())
	default:
		fmt.Println("vipctl: no command", os.Args[1])
		os.Exit(2)
	}
	if err != nil {
		fmt.Println(err)
		os.Exit(1)
	}
	fmt.Println("ok")
}
