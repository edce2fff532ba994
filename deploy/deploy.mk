# deploy/ targets. Included from the root Makefile, which defines UV and PY.
#
# helm, kubeconform and promtool are built from source with `go install` at pinned versions
# (the Go module proxy serves them) into .tools/go/<tool>-<version>/, once; a version bump
# builds the new one beside the old. Kubernetes JSON schemas for kubeconform come from the
# locked `kubernetes-validate` wheel (tools/k8s_schemas.py): GitHub is not reachable from CI.

GO ?= go
HELM_VERSION := v4.3.2
KUBECONFORM_VERSION := v0.8.0
PROMTOOL_VERSION := v0.316.0
KUBERNETES_VERSION := 1.33.0
HELM := .tools/go/helm-$(HELM_VERSION)/helm
KUBECONFORM := .tools/go/kubeconform-$(KUBECONFORM_VERSION)/kubeconform
PROMTOOL := .tools/go/promtool-$(PROMTOOL_VERSION)/promtool
K8S_SCHEMAS := .tools/kubernetes-json-schema/v$(KUBERNETES_VERSION)-standalone-strict

.PHONY: deploy-tools check-deploy

$(HELM):
	GOBIN=$(abspath $(dir $@)) GOFLAGS=-mod=mod $(GO) install helm.sh/helm/v4/cmd/helm@$(HELM_VERSION)

$(KUBECONFORM):
	GOBIN=$(abspath $(dir $@)) GOFLAGS=-mod=mod $(GO) install github.com/yannh/kubeconform/cmd/kubeconform@$(KUBECONFORM_VERSION)

$(PROMTOOL):
	GOBIN=$(abspath $(dir $@)) GOFLAGS=-mod=mod $(GO) install github.com/prometheus/prometheus/cmd/promtool@$(PROMTOOL_VERSION)

$(K8S_SCHEMAS)/.complete: uv.lock tools/k8s_schemas.py | .venv/.installed
	$(PY) tools/k8s_schemas.py .tools/kubernetes-json-schema --version $(KUBERNETES_VERSION)
	@touch $@

deploy-tools: $(HELM) $(KUBECONFORM) $(PROMTOOL) $(K8S_SCHEMAS)/.complete ## Build helm, kubeconform, promtool (go install, pinned) and the Kubernetes schemas into .tools/

check-deploy: install deploy-tools ## Chart (helm lint, kubeconform), compose schema, Dockerfile rules, alert rules (promtool), dashboards
	$(UV) run --frozen pytest tests/deploy -q
