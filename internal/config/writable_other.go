//go:build !unix

package config

import "os"

// writable reports whether dir exists and is a folder; systems without access(2) have
// no cheaper way to ask.
func writable(dir string) bool {
	fi, err := os.Stat(dir)
	return err == nil && fi.IsDir()
}
