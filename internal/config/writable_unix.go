//go:build unix

package config

import "syscall"

// writable reports whether the process may create files in dir (access(2) with W_OK,
// which also fails on a read-only file system).
func writable(dir string) bool {
	const wOK = 0x2
	return syscall.Access(dir, wOK) == nil
}
