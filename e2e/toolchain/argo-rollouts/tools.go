//go:build tools

// Package tools pins the Argo Rollouts controller that bench/ runs beside the
// operator. Upstream's module `replace`s every k8s.io staging module, and a
// dependency's replace directives are ignored, so `go install
// github.com/argoproj/argo-rollouts/cmd/rollouts-controller@...` cannot work;
// this wrapper repeats them (regen-modules.sh copies them from upstream's go.mod).
// A main package cannot be imported, so what cmd/rollouts-controller imports
// is, which keeps every dependency of the binary in go.sum.
package tools

import (
	_ "github.com/argoproj/argo-rollouts/controller"
	_ "github.com/argoproj/argo-rollouts/controller/metrics"
	_ "github.com/argoproj/argo-rollouts/metricproviders"
	_ "github.com/argoproj/argo-rollouts/metricproviders/job"
	_ "github.com/argoproj/argo-rollouts/pkg/apis/rollouts/v1alpha1"
	_ "github.com/argoproj/argo-rollouts/pkg/client/clientset/versioned"
	_ "github.com/argoproj/argo-rollouts/pkg/signals"
	_ "github.com/argoproj/argo-rollouts/rollout"
	_ "github.com/argoproj/argo-rollouts/utils/controller"
	_ "github.com/argoproj/argo-rollouts/utils/defaults"
	_ "github.com/argoproj/argo-rollouts/utils/errors"
	_ "github.com/argoproj/argo-rollouts/utils/ingress"
	_ "github.com/argoproj/argo-rollouts/utils/istio"
	_ "github.com/argoproj/argo-rollouts/utils/log"
	_ "github.com/argoproj/argo-rollouts/utils/record"
	_ "github.com/argoproj/argo-rollouts/utils/tolerantinformer"
	_ "github.com/argoproj/argo-rollouts/utils/version"
	_ "github.com/argoproj/pkg/kubeclientmetrics"
	_ "github.com/servicemeshinterface/smi-sdk-go/pkg/gen/client/split/clientset/versioned"
	_ "github.com/sirupsen/logrus"
	_ "github.com/spf13/cobra"
	_ "k8s.io/apimachinery/pkg/apis/meta/v1"
	_ "k8s.io/client-go/discovery"
	_ "k8s.io/client-go/dynamic"
	_ "k8s.io/client-go/dynamic/dynamicinformer"
	_ "k8s.io/client-go/informers"
	_ "k8s.io/client-go/kubernetes"
	_ "k8s.io/client-go/plugin/pkg/client/auth/azure"
	_ "k8s.io/client-go/plugin/pkg/client/auth/gcp"
	_ "k8s.io/client-go/plugin/pkg/client/auth/oidc"
	_ "k8s.io/client-go/tools/clientcmd"
)
