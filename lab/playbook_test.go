package lab

import (
	"reflect"
	"testing"
)

func TestParseRecap(t *testing.T) {
	for _, c := range []struct {
		name string
		out  string
		want map[string]HostRecap
	}{
		{"two hosts", `PLAY [all] *****

TASK [ping] *****
ok: [node1]

PLAY RECAP *********************************************************************
node1                      : ok=31   changed=0    unreachable=0    failed=0    skipped=4    rescued=0    ignored=0
node2                      : ok=29   changed=2    unreachable=0    failed=1    skipped=4    rescued=1    ignored=2

`, map[string]HostRecap{
			"node1": {OK: 31, Skipped: 4},
			"node2": {OK: 29, Changed: 2, Failed: 1, Skipped: 4, Rescued: 1, Ignored: 2},
		}},
		{"unreachable, then a warning after the recap", `PLAY RECAP ***
node3 : ok=0 changed=0 unreachable=1 failed=0 skipped=0 rescued=0 ignored=0
[WARNING]: something
`, map[string]HostRecap{"node3": {Unreachable: 1}}},
		{"the last of several plays' recaps", `PLAY RECAP ***
node1 : ok=1 changed=1 unreachable=0 failed=0 skipped=0 rescued=0 ignored=0

PLAY RECAP ***
node1 : ok=2 changed=0 unreachable=0 failed=0 skipped=0 rescued=0 ignored=0
`, map[string]HostRecap{"node1": {OK: 2}}},
	} {
		got, err := ParseRecap(c.out)
		if err != nil {
			t.Errorf("%s: %v", c.name, err)
			continue
		}
		if !reflect.DeepEqual(got, c.want) {
			t.Errorf("%s: %+v, want %+v", c.name, got, c.want)
		}
	}
	for _, bad := range []string{"", "ERROR! the playbook could not be found\n", "PLAY RECAP ***\n\n"} {
		if r, err := ParseRecap(bad); err == nil {
			t.Errorf("%q: parsed %+v", bad, r)
		}
	}
	run := PlaybookRun{Recap: map[string]HostRecap{"a": {Changed: 2}, "b": {Changed: 3}}}
	if run.Changed() != 5 {
		t.Errorf("Changed() = %d", run.Changed())
	}
}

func TestPlaybookTasks(t *testing.T) {
	run := PlaybookRun{Output: `TASK [consul : Write the configuration] ****
ok: [node1]
changed: [node2]

TASK [openssi : Install the helper] ****
fatal: [node1]: FAILED! => {"msg": "Destination directory /usr/local/libexec does not exist"}

RUNNING HANDLER [consul : Restart consul] ****
changed: [node3]
`}
	for status, want := range map[string][]string{
		"changed":  {"TASK [consul : Write the configuration]: changed: [node2]", "RUNNING HANDLER [consul : Restart consul]: changed: [node3]"},
		"fatal":    {`TASK [openssi : Install the helper]: fatal: [node1]: FAILED! => {"msg": "Destination directory /usr/local/libexec does not exist"}`},
		"skipping": nil,
	} {
		if got := run.Tasks(status); !reflect.DeepEqual(got, want) {
			t.Errorf("Tasks(%q) = %q, want %q", status, got, want)
		}
	}
}
