package aurora

import (
	"reflect"
	"testing"
)

func TestInitRoots(t *testing.T) {
	jobs, err := Parse([]byte(`{"name": "a", "role": "r", "cluster": "c", "environment": "devel", "task": {"processes": [
	  {"name": "nix_init", "cmdline": "/nix/var/nix/profiles/default/bin/nix-init '--substituter' 'http://cache/x=/y' 'web=/nix/store/11111111111111111111111111111111-root-web' 'it'\\''s a=b=/nix/store/22222222222222222222222222222222-root-q'"},
	  {"name": "nix_init_final", "final": true, "cmdline": "'/opt/nix init' \"cleanup=/nix/store/33333333333333333333333333333333-root-c\""},
	  {"name": "web", "cmdline": "/nix/store/55555555555555555555555555555555-web/bin/web x=/nix/store/66666666666666666666666666666666-no"}]}}`))
	if err != nil {
		t.Fatal(err)
	}
	got, err := jobs[0].InitRoots()
	if err != nil {
		t.Fatal(err)
	}
	want := []InitRoot{
		{"nix_init", "web", "/nix/store/11111111111111111111111111111111-root-web"},
		{"nix_init", "it's a=b", "/nix/store/22222222222222222222222222222222-root-q"},
		{"nix_init_final", "cleanup", "/nix/store/33333333333333333333333333333333-root-c"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("InitRoots =\n%q\nwant\n%q", got, want)
	}
	bad := "nix-init 'a=/nix/store/x"
	jobs[0].Task.Processes[0].Cmdline = &bad
	if _, err := jobs[0].InitRoots(); err == nil {
		t.Fatal("an unterminated quote was accepted")
	}
}
