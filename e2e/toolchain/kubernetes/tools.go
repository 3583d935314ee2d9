//go:build tools

// Package tools pins the Kubernetes server and client binaries this project's
// tests run against. The main packages (k8s.io/kubernetes/cmd/...) cannot be
// imported, so their app packages are, which keeps every dependency in go.sum.
package tools

import (
	_ "k8s.io/kubectl/pkg/cmd"
	_ "k8s.io/kubernetes/cmd/kube-apiserver/app"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager/app"
	_ "k8s.io/kubernetes/cmd/kube-scheduler/app"
)
