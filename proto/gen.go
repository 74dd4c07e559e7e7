// Package proto holds the .proto definitions of OpenSSI's APIs and the Go
// code generated from them (committed; `make proto` regenerates it and `make
// check-protos` verifies it is current). Each daemon has two packages: its
// public local API (clms/v1, dlm/v1, vproc/v1, initfailover/v1), which client libraries and
// `ssi` use, and its internal peer protocol between daemons (clmspeer/v1,
// dlmpeer/v1, vprocpeer/v1, initfailoverpeer/v1, cfspeer/v1), which only the daemon itself imports.
package proto

//go:generate sh -c "protoc -I . --go_out=paths=source_relative:. --go-grpc_out=paths=source_relative:. clms/v1/*.proto clmspeer/v1/*.proto dlm/v1/*.proto dlmpeer/v1/*.proto vproc/v1/*.proto vprocpeer/v1/*.proto initfailover/v1/*.proto initfailoverpeer/v1/*.proto keepalive/v1/*.proto lvs/v1/*.proto cfspeer/v1/*.proto"
