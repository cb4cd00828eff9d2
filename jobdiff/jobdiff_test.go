package jobdiff

import (
	"reflect"
	"strings"
	"testing"

	"github.com/nix-aurora/nix-aurora/aurora"
)

const (
	sslOld  = "/nix/store/00000000000000000000000000000000-openssl-3.0.7"
	sslNew  = "/nix/store/11111111111111111111111111111111-openssl-3.0.8"
	appOld  = "/nix/store/22222222222222222222222222222222-app"
	appNew  = "/nix/store/33333333333333333333333333333333-app"
	zlib    = "/nix/store/44444444444444444444444444444444-zlib-1.3"
	rootOld = "/nix/store/55555555555555555555555555555555-aurora-root-c-r-e-j-web"
	rootNew = "/nix/store/66666666666666666666666666666666-aurora-root-c-r-e-j-web"
	extra   = "/nix/store/77777777777777777777777777777777-curl-8.0"
)

func TestPathDiffPairsVersions(t *testing.T) {
	got := pathDiff([]string{appOld, sslOld, zlib}, []string{appNew, sslNew, zlib, extra})
	want := []PathChange{
		{Name: "app", Old: appOld, New: appNew},
		{Name: "openssl-3.0.7 -> openssl-3.0.8", Old: sslOld, New: sslNew},
		{Name: "curl-8.0", New: extra},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("pathDiff =\n%v\nwant\n%v", got, want)
	}
	if s := want[1].String(); !strings.Contains(s, "openssl-3.0.7 -> openssl-3.0.8") || !strings.HasPrefix(s, "~ ") {
		t.Fatalf("String() = %q", s)
	}
}

func job(cmdline, root string, ram int64) aurora.Job {
	s := func(v string) *string { return &v }
	return aurora.Job{
		Cluster: s("c"), Role: s("r"), Environment: s("e"), Name: s("j"),
		Task: &aurora.Task{
			Processes: []aurora.Process{
				{Name: s("nix_init"), Cmdline: s("/nix/var/nix/profiles/default/bin/nix-init 'web=" + root + "'")},
				{Name: s("web"), Cmdline: s(cmdline)},
			},
			Resources: &aurora.Resources{RAM: &ram},
		},
	}
}

func TestCompare(t *testing.T) {
	closures := map[string][]string{
		rootOld: {rootOld, appOld, sslOld, zlib},
		rootNew: {rootNew, appNew, sslNew, zlib},
	}
	closure := func(p string) ([]string, error) { return closures[p], nil }
	old := []aurora.Job{job(appOld+"/bin/app --port 80", rootOld, 1<<20)}
	new := []aurora.Job{job(appNew+"/bin/app --port 80", rootNew, 2<<20)}
	changes := Compare(old, new, closure)
	if len(changes) != 1 || changes[0].Key != "c/r/e/j" {
		t.Fatalf("changes = %+v", changes)
	}
	c := changes[0]
	if !reflect.DeepEqual(c.Fields, []string{"task.resources.ram: 1048576 -> 2097152"}) {
		t.Errorf("fields = %v", c.Fields)
	}
	if len(c.Processes) != 2 || c.Processes[0].Name != "nix_init" || c.Processes[1].Name != "web" {
		t.Fatalf("processes = %+v", c.Processes)
	}
	web := c.Processes[1]
	if web.CmdlineText || len(web.Cmdline) != 1 || web.Cmdline[0].Old != appOld {
		t.Errorf("web cmdline = %+v text=%v", web.Cmdline, web.CmdlineText)
	}
	if len(web.Closure) != 1 || web.Closure[0].New != sslNew {
		t.Errorf("web closure = %+v (want only openssl: app is listed under the cmdline, the root is implied)", web.Closure)
	}

	// A changed flag is a text change even with the same store paths.
	changes = Compare(old, []aurora.Job{job(appOld+"/bin/app --port 81", rootOld, 1<<20)}, nil)
	if len(changes) != 1 || len(changes[0].Processes) != 1 || !changes[0].Processes[0].CmdlineText {
		t.Fatalf("text change: %+v", changes)
	}
	if got := Compare(old, old, closure); len(got) != 0 {
		t.Fatalf("same jobs differ: %+v", got)
	}
	if got := Compare(old, nil, nil); len(got) != 1 || !got[0].Removed {
		t.Fatalf("removed job: %+v", got)
	}
}
