#!/bin/sh
# Regenerates grpc_predict_v2_pb2.py and .pyi from KServe's grpc_predict_v2.proto (copied unchanged
# from github.com/kserve/kserve docs/predict-api/v2/grpc_predict_v2.proto, commit aaac4e29).
# Needs grpcio-tools < 1.80 (its protoc emits code for protobuf 6.31, the oldest runtime we allow).
#
# The messages go into a descriptor pool of their own, not protobuf's default one: tritonclient
# and MLServer register the same proto package (`inference`) from files of their own, and two
# files defining `inference.ModelInferRequest` in one pool cannot be loaded into one process.
# Message names never go on the wire (only the service path does), so a private pool is invisible
# to clients. Run from the repository root: sh gateway/grpc/generate.sh
set -eu
cd "$(dirname "$0")/../.."
python -m grpc_tools.protoc -I. --python_out=. --pyi_out=. gateway/grpc/grpc_predict_v2.proto
sed -i 's/^_sym_db = _symbol_database.Default()$/_sym_db = _symbol_database.Default()\nPOOL = _descriptor_pool.DescriptorPool()  # private: see generate.sh/; s/^DESCRIPTOR = _descriptor_pool.Default().AddSerializedFile(/DESCRIPTOR = POOL.AddSerializedFile(/' \
    gateway/grpc/grpc_predict_v2_pb2.py
