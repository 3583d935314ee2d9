"""End-to-end support for Model Canary Operator: the real test control plane.

Nothing in here mocks Kubernetes or Prometheus. The harness builds and starts
real etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kwok and
Prometheus processes on loopback, and tears every one of them down again.
"""
