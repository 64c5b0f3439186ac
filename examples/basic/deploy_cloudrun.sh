#!/usr/bin/env bash
# Builds the example image for linux/amd64, pushes it to Artifact Registry and deploys
# it as a Cloud Run service.  On Cloud Run the app's storage routes answer 503 (there is
# no host command channel there); /, /healthz and the metadata work.
#
# Needs: Docker, the gcloud CLI, logged in (`gcloud auth login`).
#
# Environment (all optional except where gcloud has no default):
#   PROJECT_ID    Google Cloud project   (default: gcloud config get-value project)
#   REGION        Cloud Run region       (default: gcloud config get-value run/region)
#   SERVICE_NAME  Cloud Run service      (default: containerflare-example)
#   REPOSITORY    Artifact Registry Docker repository, created if missing
#                                        (default: containerflare)
#   TAG           image tag              (default: the git commit, else a timestamp)
#   LOG_LEVEL     CONTAINERFLARE_LOG_LEVEL of the service: debug, info, warn, error
#                                        (default: info)
#   ALLOW_UNAUTH  true/1/yes: public service (--allow-unauthenticated); anything else,
#                 or unset: only authenticated callers (--no-allow-unauthenticated)
#   IMAGE         full image name, overriding REGION-docker.pkg.dev/PROJECT/REPOSITORY/SERVICE:TAG
set -euo pipefail
cd "$(dirname "$0")"

die() {
  echo "deploy_cloudrun.sh: $*" >&2
  exit 1
}

command -v docker >/dev/null 2>&1 || die "docker is required"
command -v gcloud >/dev/null 2>&1 || die "the gcloud CLI is required (https://cloud.google.com/sdk)"

# `gcloud config get-value` prints nothing (or "(unset)") for a missing value.
gcloud_default() {
  local value
  value=$(gcloud config get-value "$1" 2>/dev/null || true)
  if [ "$value" = "(unset)" ]; then
    value=""
  fi
  printf '%s' "$value"
}

PROJECT_ID=${PROJECT_ID:-$(gcloud_default project)}
[ -n "$PROJECT_ID" ] ||
  die "no Google Cloud project: set PROJECT_ID, or run: gcloud config set project PROJECT_ID"
REGION=${REGION:-$(gcloud_default run/region)}
[ -n "$REGION" ] ||
  die "no Cloud Run region: set REGION, or run: gcloud config set run/region REGION (e.g. europe-west1)"

SERVICE_NAME=${SERVICE_NAME:-containerflare-example}
REPOSITORY=${REPOSITORY:-containerflare}
LOG_LEVEL=${LOG_LEVEL:-info}
case "$LOG_LEVEL" in
  debug | info | warn | error) ;;
  *) die "LOG_LEVEL must be debug, info, warn or error, not '$LOG_LEVEL'" ;;
esac
if [ -z "${TAG:-}" ]; then
  TAG=$(git rev-parse --short=12 HEAD 2>/dev/null || date -u +%Y%m%d%H%M%S)
fi
IMAGE=${IMAGE:-${REGION}-docker.pkg.dev/${PROJECT_ID}/${REPOSITORY}/${SERVICE_NAME}:${TAG}}

case "${ALLOW_UNAUTH:-}" in
  1 | true | TRUE | True | yes | YES) AUTH_FLAG=--allow-unauthenticated ;;
  *) AUTH_FLAG=--no-allow-unauthenticated ;;
esac

echo "deploying $IMAGE to Cloud Run service $SERVICE_NAME ($PROJECT_ID, $REGION, $AUTH_FLAG)" >&2

./build_wheel.sh

docker build --platform=linux/amd64 --tag "$IMAGE" .

if [[ "$IMAGE" == "${REGION}-docker.pkg.dev/"* ]]; then
  if ! gcloud artifacts repositories describe "$REPOSITORY" \
    --project "$PROJECT_ID" --location "$REGION" >/dev/null 2>&1; then
    gcloud artifacts repositories create "$REPOSITORY" \
      --project "$PROJECT_ID" --location "$REGION" --repository-format docker --quiet
  fi
  gcloud auth configure-docker "${REGION}-docker.pkg.dev" --quiet
fi

docker push "$IMAGE"

gcloud run deploy "$SERVICE_NAME" \
  --project "$PROJECT_ID" \
  --region "$REGION" \
  --image "$IMAGE" \
  --port 8080 \
  --set-env-vars "CONTAINERFLARE_LOG_LEVEL=${LOG_LEVEL}" \
  "$AUTH_FLAG" \
  --quiet
