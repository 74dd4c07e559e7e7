package proctable

import (
	"testing/fstest"
)

// Samples captured from a real /proc (Linux 6.x, 2 CPUs), then trimmed.
const (
	// pid 1, multithreaded with locked memory: ps shows "SLl".
	stat1    = "1 (process_api) S 0 0 0 0 -1 4194560 145758 321994600 0 66489 785 5347 746550 284243 20 0 13 0 24 44118016 3327 18446744073709551615 1 1 0 0 0 0 0 4096 1256 0 0 0 17 1 0 0 0 0 0 0 0 0 0 0 0 0 0\n"
	status1  = "Name:\tprocess_api\nUmask:\t0022\nState:\tS (sleeping)\nTgid:\t1\nPid:\t1\nPPid:\t0\nUid:\t0\t0\t0\t0\nGid:\t0\t0\t0\t0\nVmLck:\t   43052 kB\nVmRSS:\t   13456 kB\nThreads:\t13\n"
	cmdline1 = "process_api\x00--firecracker-init\x00--addr\x000.0.0.0:2024\x00"

	// pid 2, kthreadd: a kernel thread, no VmRSS, empty cmdline.
	stat2   = "2 (kthreadd) S 0 0 0 0 -1 2129984 0 0 0 0 0 0 0 0 20 0 1 0 24 0 0 18446744073709551615 0 0 0 0 0 0 0 2147483647 0 1 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0\n"
	status2 = "Name:\tkthreadd\nUmask:\t0022\nState:\tS (sleeping)\nTgid:\t2\nPid:\t2\nPPid:\t0\nTracerPid:\t0\nUid:\t0\t0\t0\t0\nGid:\t0\t0\t0\t0\nFDSize:\t64\nGroups:\t \nKthread:\t1\nThreads:\t1\n"

	// pid 4, a kworker at nice -20, idle state: ps shows "I<".
	stat4   = "4 (kworker/R-rcu_gp) I 2 0 0 0 -1 69238880 0 0 0 0 0 0 0 0 0 -20 1 0 24 0 0 18446744073709551615 0 0 0 0 0 0 0 2147483647 0 1 0 0 17 0 0 0 0 0 0 0 0 0 0 0 0 0 0\n"
	status4 = "Name:\tkworker/R-rcu_gp\nUid:\t0\t0\t0\t0\nGid:\t0\t0\t0\t0\n"

	// pid 6250, agetty: session leader in its terminal's foreground, "Ss+".
	stat6250    = "6250 (agetty) S 6129 6250 6250 34816 6250 4194560 176 0 0 0 0 0 0 0 20 0 1 0 1210798 3022848 535 18446744073709551615 94719576743936 94719576778057 140736874731328 0 0 0 0 6 0 1 0 0 17 0 0 0 0 0 0 94719576795056 94719576798416 94720624439296 140736874733317 140736874733390 140736874733390 140736874733547 0\n"
	status6250  = "Name:\tagetty\nUid:\t0\t0\t0\t0\nGid:\t0\t0\t0\t0\nVmLck:\t       0 kB\nVmRSS:\t    2148 kB\n"
	cmdline6250 = "/sbin/agetty\x00-o\x00-p -- \\u\x00--noclear\x00--keep-baud\x00-\x00115200,38400,9600\x00xterm\x00"

	// pid 7710, a bash that named itself "a) b (c" (printf > /proc/$$/comm),
	// run by uid 1000 in this sample.
	stat7710    = "7710 (a) b (c) R 7708 7708 32408 0 -1 4194304 168 0 0 0 250 50 0 0 20 5 1 0 1213674 4464640 747 18446744073709551615 94446285520896 94446286310301 140736703402048 0 0 0 0 4 65536 0 0 0 17 0 0 0 0 0 0 94446286543600 94446286591844 94446497402880 140736703408531 140736703408657 140736703408657 140736703410154 0\n"
	status7710  = "Name:\ta) b (c\nUid:\t1000\t1000\t1000\t1000\nGid:\t100\t100\t100\t100\nVmLck:\t       0 kB\nVmRSS:\t    2168 kB\n"
	cmdline7710 = "bash\x00-c\x00printf \"a) b (c\" > /proc/$$/comm\x00"
	environ7710 = "HOME=/home/alice\x00SECRET=hunter2\x00"

	procStat   = "cpu  4705 356 584 3699 23 23 0 0 0 0\ncpu0 1393 61 214 1840 12 10 0 0 0 0\nintr 1462898\nctxt 2510584\nbtime 1795968787\nprocesses 7720\nprocs_running 1\nprocs_blocked 0\n"
	procUptime = "12200.00 11356.85\n"
)

func sampleFS() fstest.MapFS {
	fsys := fstest.MapFS{
		"stat":   {Data: []byte(procStat)},
		"uptime": {Data: []byte(procUptime)},
		// Not processes: ignored.
		"self":    {Data: []byte("link")},
		"sys/x":   {Data: []byte("")},
		"0012/x":  {Data: []byte("")},
		"loadavg": {Data: []byte("0.52 0.58 0.59 2/1234 5678\n")},
	}
	add := func(pid, stat, status, cmdline, environ string) {
		fsys[pid+"/stat"] = &fstest.MapFile{Data: []byte(stat)}
		fsys[pid+"/status"] = &fstest.MapFile{Data: []byte(status)}
		fsys[pid+"/cmdline"] = &fstest.MapFile{Data: []byte(cmdline)}
		fsys[pid+"/environ"] = &fstest.MapFile{Data: []byte(environ), Mode: 0o400}
	}
	add("1", stat1, status1, cmdline1, "")
	add("2", stat2, status2, "", "")
	add("4", stat4, status4, "", "")
	add("6250", stat6250, status6250, cmdline6250, "TERM=xterm\x00")
	add("7710", stat7710, status7710, cmdline7710, environ7710)
	return fsys
}
