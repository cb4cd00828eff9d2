package testnode

import (
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/nix-aurora/nix-aurora/internal/testnix"
)

// Sandbox is an Aurora sandbox in miniature: a directory owned by the
// unprivileged user nobody, where programs run as nobody with a minimal
// environment like Thermos gives them.
type Sandbox struct {
	Dir  string // owned by nobody, mode 0755; the cwd of its commands
	User string // "nobody"
	UID  uint32
	GID  uint32
	Node *Node
}

// NewSandbox makes a sandbox for node. It needs root (it skips, or fails in
// CI, otherwise). Every directory above Dir that lies under the harness's
// temporary root gets o+x so that nobody can reach Dir; the test fails if
// another ancestor is not traversable.
func NewSandbox(t testing.TB, node *Node) *Sandbox {
	t.Helper()
	testnix.RequireRoot(t)
	s := &Sandbox{User: "nobody", UID: 65534, GID: 65534, Node: node}
	if u, err := user.Lookup("nobody"); err == nil {
		if v, err := strconv.ParseUint(u.Uid, 10, 32); err == nil {
			s.UID = uint32(v)
		}
		if v, err := strconv.ParseUint(u.Gid, 10, 32); err == nil {
			s.GID = uint32(v)
		}
	}
	s.Dir = filepath.Join(shortTempDir(t, "tn-sandbox-"), "sandbox")
	if err := os.Mkdir(s.Dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(s.Dir, int(s.UID), int(s.GID)); err != nil {
		t.Fatal(err)
	}
	makeReachable(t, s.Dir)
	return s
}

// CopyExecutable copies the program at path (for example a test binary,
// which `go test` keeps in a directory only its owner can enter) into a
// root-owned directory next to Dir that nobody can reach, mode 0755, and
// returns the copy's path.
func (s *Sandbox) CopyExecutable(t testing.TB, path string) string {
	t.Helper()
	bin := filepath.Join(filepath.Dir(s.Dir), "bin")
	if err := os.MkdirAll(bin, 0o755); err != nil {
		t.Fatal(err)
	}
	dst := filepath.Join(bin, filepath.Base(path))
	// Copied by another process: a file this process had open for writing
	// could be inherited by a fork of a parallel test, and exec would then
	// fail with "text file busy".
	if out, err := exec.Command("install", "-m", "0755", path, dst).CombinedOutput(); err != nil {
		t.Fatalf("testnode: copy %s: %v\n%s", path, err, out)
	}
	return dst
}

// makeReachable gives o+x to dir's ancestors under the harness's temporary
// root, and fails if any other ancestor is closed to others.
func makeReachable(t testing.TB, dir string) {
	t.Helper()
	root := filepath.Clean(tempRoot())
	for p := filepath.Dir(dir); ; p = filepath.Dir(p) {
		st, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode().Perm()&0o001 == 0 {
			if !strings.HasPrefix(p, root+"/") {
				t.Fatalf("testnode: %s is not traversable by others (mode %v), so nobody cannot reach %s", p, st.Mode().Perm(), dir)
			}
			if err := os.Chmod(p, st.Mode().Perm()|0o001); err != nil {
				t.Fatal(err)
			}
		}
		if p == "/" || p == "." {
			return
		}
	}
}

// Env is the environment of the sandbox's commands: HOME=Dir, USER and
// LOGNAME=nobody, PATH=/usr/bin:/bin, and the node's NIX_CONF_DIR and
// NIX_DAEMON_SOCKET_PATH. No NIX_REMOTE: Nix's "auto" store finds the
// daemon because nobody cannot write /nix/var/nix. Append NIX_REMOTE=… to
// cmd.Env to choose.
func (s *Sandbox) Env() []string {
	return []string{
		"HOME=" + s.Dir,
		"USER=" + s.User,
		"LOGNAME=" + s.User,
		"PATH=/usr/bin:/bin",
		"NIX_CONF_DIR=" + s.Node.ConfDir,
		"NIX_DAEMON_SOCKET_PATH=" + s.Node.Socket,
	}
}

// Command runs a program as nobody (no supplementary groups) in Dir with
// Env(). It sees the host's /nix/store; see BindCommand for the node's.
func (s *Sandbox) Command(name string, args ...string) *exec.Cmd {
	cmd := exec.Command(name, args...)
	cmd.Dir = s.Dir
	cmd.Env = s.Env()
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Credential: &syscall.Credential{Uid: s.UID, Gid: s.GID, Groups: []uint32{}},
	}
	return cmd
}

// BindCommand runs a program as nobody in Dir with Env(), in a private mount
// namespace where the node's store is mounted on /nix (so the node's store
// programs run). It starts as root (to mount) and drops to nobody with
// setpriv.
func (s *Sandbox) BindCommand(name string, args ...string) *exec.Cmd {
	argv := append(bindStore(s.Node.Root, fmt.Sprintf(
		"exec setpriv --reuid=%d --regid=%d --clear-groups -- \"$@\"", s.UID, s.GID)), name)
	cmd := exec.Command(argv[0], append(argv[1:], args...)...)
	cmd.Dir = s.Dir
	cmd.Env = s.Env()
	return cmd
}

// BindStore returns a command prefix that runs a program with the store
// whose root is root (a Node's Root) bind-mounted on /nix, in a private mount
// namespace, so the rest of the machine is unaffected:
//
//	unshare --mount --propagation private sh -c 'mount --bind "$0/nix" /nix && exec "$@"' ROOT
//
// Append the program and its arguments:
//
//	argv := append(testnode.BindStore(node.Root), fx.Program)
//	cmd := exec.Command(argv[0], argv[1:]...)
//
// It needs root (CAP_SYS_ADMIN) and an existing /nix directory. To run the
// program as nobody, use Sandbox.BindCommand.
func BindStore(root string) []string {
	return bindStore(root, `exec "$@"`)
}

func bindStore(root, then string) []string {
	return []string{"unshare", "--mount", "--propagation", "private",
		"sh", "-c", `mount --bind "$0/nix" /nix && ` + then, root}
}

// BindCommand runs a program as this process's user (root) with the node's
// store on /nix (see BindStore) and Environ() plus NIX_REMOTE=local, which
// inside the namespace is the node's store.
func (n *Node) BindCommand(name string, args ...string) *exec.Cmd {
	argv := append(BindStore(n.Root), name)
	cmd := exec.Command(argv[0], append(argv[1:], args...)...)
	cmd.Env = append(n.Environ(), "NIX_REMOTE=local")
	return cmd
}
