#!/usr/bin/env bash
# Build (and optionally push) the three modelsync images, as the polling sidecar's build.sh did:
#   REGISTRY=registry.example.com IMAGE_NAME=modelsync TAG=1.2.0 PUSH=true ./build.sh
# Produces $REGISTRY/$IMAGE_NAME-webhook:$TAG, $REGISTRY/$IMAGE_NAME-agent:$TAG and
# $REGISTRY/$IMAGE_NAME-gateway:$TAG (which also runs the Kafka provider).
set -euo pipefail

REGISTRY="${REGISTRY:-localhost}"
IMAGE_NAME="${IMAGE_NAME:-modelsync}"
TAG="${TAG:-latest}"
PUSH="${PUSH:-false}"
# Extra arguments for every `docker build`, e.g. DOCKER_BUILD_ARGS="--platform linux/arm64".
DOCKER_BUILD_ARGS="${DOCKER_BUILD_ARGS:-}"

# The Dockerfiles copy the sources from the repository root, wherever this is run from.
cd "$(dirname "${BASH_SOURCE[0]}")"

# The Dockerfiles use RUN --mount, which needs BuildKit.
export DOCKER_BUILDKIT=1

read -r -a extra_args <<< "${DOCKER_BUILD_ARGS}"

components=(webhook agent gateway)

for component in "${components[@]}"; do
    image="${REGISTRY}/${IMAGE_NAME}-${component}:${TAG}"
    echo "==> building ${image}"
    # The ${a[@]+...} form: an empty array under set -u breaks bash before 4.4 (macOS).
    docker build ${extra_args[@]+"${extra_args[@]}"} --file "Dockerfile.${component}" --tag "${image}" .
done

if [[ "${PUSH}" == "true" ]]; then
    for component in "${components[@]}"; do
        image="${REGISTRY}/${IMAGE_NAME}-${component}:${TAG}"
        echo "==> pushing ${image}"
        docker push "${image}"
    done
fi
