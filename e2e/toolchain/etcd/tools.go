//go:build tools

// Package tools pins etcd. Upstream's server module replaces its siblings with
// relative paths, so `go install go.etcd.io/etcd/server/v3@...` cannot work;
// this wrapper requires the published modules instead.
package tools

import (
	_ "go.etcd.io/etcd/server/v3/etcdmain"
)
