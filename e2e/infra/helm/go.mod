// Helm, built from its Go module, to render and check the operator's chart.
module strom.dev/e2e/helm

go 1.26.0

require helm.sh/helm/v3 v3.22.0
