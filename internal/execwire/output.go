package execwire

// Decoding vproc.v1's ExecOutput and google.rpc.Status, and encoding the
// ExecInput frames after the first, by hand as AppendStartFrame: for ssi
// exec's early start, which runs its whole exec before protobuf is
// initialised. Fields this package does not know are skipped, as
// protobuf does.

// Output kinds: which of ExecOutput's oneof came.
const (
	OutNone    = 0
	OutStarted = 1
	OutStdout  = 2
	OutStderr  = 3
	OutExit    = 4
	OutMoved   = 5
)

// Output is a decoded ExecOutput: Kind says which of its parts is set.
type Output struct {
	Kind int
	// Started (OutStarted).
	Cpid        int64
	Node        uint32
	Pid         int32
	PassedStdio uint32
	// Data is the chunk of OutStdout and OutStderr (a part of the
	// message decoded).
	Data []byte
	// Code, Signal and Reason (OutExit).
	Code, Signal int32
	Reason       string
}

// Errors of the decoders.
const (
	ErrTruncated Error = "execwire: message truncated"
	ErrWireType  Error = "execwire: field of an unknown wire type"
	ErrVarint    Error = "execwire: varint too long"
)

// DecodeOutput decodes an ExecOutput.
func DecodeOutput(b []byte) (Output, error) {
	var o Output
	err := eachField(b, func(field int, wt int, v uint64, data []byte) error {
		switch {
		case field == 1 && wt == wireBytes:
			if o.Kind != OutStarted { // a repeated one merges
				o = Output{Kind: OutStarted}
			}
			return eachField(data, func(f int, wt int, v uint64, _ []byte) error {
				if wt != wireVarint {
					return nil
				}
				switch f {
				case 1:
					o.Cpid = int64(v)
				case 2:
					o.Node = uint32(v)
				case 3:
					o.Pid = int32(v)
				case 4:
					o.PassedStdio = uint32(v)
				}
				return nil
			})
		case (field == 2 || field == 3) && wt == wireBytes:
			o = Output{Kind: field, Data: data}
		case field == 4 && wt == wireBytes:
			if o.Kind != OutExit {
				o = Output{Kind: OutExit}
			}
			return eachField(data, func(f int, wt int, v uint64, d []byte) error {
				switch {
				case f == 1 && wt == wireVarint:
					o.Code = int32(v)
				case f == 2 && wt == wireVarint:
					o.Signal = int32(v)
				case f == 3 && wt == wireBytes:
					o.Reason = string(d)
				}
				return nil
			})
		case field == 5 && wt == wireBytes:
			o = Output{Kind: OutMoved}
		}
		return nil
	})
	if err != nil {
		return Output{}, err
	}
	return o, nil
}

// DecodeStatus decodes a google.rpc.Status's code and message.
func DecodeStatus(b []byte) (code int32, msg string, err error) {
	err = eachField(b, func(field int, wt int, v uint64, data []byte) error {
		switch {
		case field == 1 && wt == wireVarint:
			code = int32(v)
		case field == 2 && wt == wireBytes:
			msg = string(data)
		}
		return nil
	})
	return code, msg, err
}

// eachField calls f with each field of a message: its number, wire type,
// value (varint, fixed) or bytes (length-delimited).
func eachField(b []byte, f func(field int, wt int, v uint64, data []byte) error) error {
	for len(b) > 0 {
		key, n := varint(b)
		if n <= 0 {
			return varintErr(n)
		}
		b = b[n:]
		field, wt := int(key>>3), int(key&7)
		if field <= 0 || key>>3 > 1<<29-1 {
			return ErrWireType
		}
		var v uint64
		var data []byte
		switch wt {
		case wireVarint:
			if v, n = varint(b); n <= 0 {
				return varintErr(n)
			}
			b = b[n:]
		case wireFixed64:
			if len(b) < 8 {
				return ErrTruncated
			}
			b = b[8:]
		case wireBytes:
			l, n := varint(b)
			if n <= 0 {
				return varintErr(n)
			}
			b = b[n:]
			if l > uint64(len(b)) {
				return ErrTruncated
			}
			data, b = b[:l], b[l:]
		case wireFixed32:
			if len(b) < 4 {
				return ErrTruncated
			}
			b = b[4:]
		case wireStartGroup:
			// A group (proto2's, in no field known here): skipped
			// to its end.
			end := uint64(field)<<3 | wireEndGroup
			depth := 0
			for {
				k, n := varint(b)
				if n <= 0 {
					return varintErr(n)
				}
				if k&7 == wireEndGroup && k == end && depth == 0 {
					b = b[n:]
					break
				}
				if depth > 100 {
					return ErrWireType
				}
				var err error
				if b, err = skipOne(b, &depth); err != nil {
					return err
				}
			}
			continue
		default:
			return ErrWireType
		}
		if err := f(field, wt, v, data); err != nil {
			return err
		}
	}
	return nil
}

const (
	wireFixed64    = 1
	wireStartGroup = 3
	wireEndGroup   = 4
	wireFixed32    = 5
)

// skipOne skips the field at the start of b inside a group; depth counts
// the groups it opens and closes.
func skipOne(b []byte, depth *int) ([]byte, error) {
	k, n := varint(b)
	if n <= 0 {
		return nil, varintErr(n)
	}
	if k>>3 == 0 || k>>3 > 1<<29-1 {
		return nil, ErrWireType
	}
	b = b[n:]
	switch k & 7 {
	case wireVarint:
		if _, n = varint(b); n <= 0 {
			return nil, varintErr(n)
		}
		return b[n:], nil
	case wireFixed64:
		if len(b) < 8 {
			return nil, ErrTruncated
		}
		return b[8:], nil
	case wireBytes:
		l, n := varint(b)
		if n <= 0 {
			return nil, varintErr(n)
		}
		if l > uint64(len(b)-n) {
			return nil, ErrTruncated
		}
		return b[n+int(l):], nil
	case wireStartGroup:
		*depth++
		return b, nil
	case wireEndGroup:
		if *depth == 0 {
			return nil, ErrWireType
		}
		*depth--
		return b, nil
	case wireFixed32:
		if len(b) < 4 {
			return nil, ErrTruncated
		}
		return b[4:], nil
	}
	return nil, ErrWireType
}

// varint decodes a varint: n is its length, 0 when b ends first, -1 when
// it is longer than 10 bytes.
func varint(b []byte) (v uint64, n int) {
	for i := 0; i < len(b); i++ {
		if i == 10 {
			return 0, -1
		}
		v |= uint64(b[i]&0x7f) << (7 * i)
		if b[i] < 0x80 {
			if i == 9 && b[i] > 1 {
				return 0, -1 // past 64 bits
			}
			return v, i + 1
		}
	}
	return 0, 0
}

func varintErr(n int) error {
	if n == 0 {
		return ErrTruncated
	}
	return ErrVarint
}

// AppendStdinFrame appends an ExecInput frame of a stdin chunk.
func AppendStdinFrame(b, chunk []byte) []byte {
	msg := appendVarint(appendVarint(nil, 2<<3|wireBytes), uint64(len(chunk)))
	b = AppendHeader(b, KindInput, len(msg)+len(chunk))
	b = append(b, msg...)
	return append(b, chunk...)
}

// AppendStdinEOFFrame appends the ExecInput frame that ends the stdin.
func AppendStdinEOFFrame(b []byte) []byte {
	msg := appendVarintField(nil, 3, 1)
	return append(AppendHeader(b, KindInput, len(msg)), msg...)
}

// AppendSignalFrame appends the ExecInput frame of a signal.
func AppendSignalFrame(b []byte, sig int32) []byte {
	msg := appendVarintField(nil, 4, uint64(int64(sig)))
	return append(AppendHeader(b, KindInput, len(msg)), msg...)
}
