// Package proto holds the .proto definitions of OpenSSI's local and
// inter-node APIs and the Go code generated from them (committed; `make
// proto` regenerates it and `make check-protos` verifies it is current).
package proto

//go:generate sh -c "protoc -I . --go_out=paths=source_relative:. --go-grpc_out=paths=source_relative:. clms/v1/*.proto dlm/v1/*.proto"
