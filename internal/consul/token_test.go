package consul

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

func TestResolveToken(t *testing.T) {
	dir := t.TempDir()
	write := func(path, data string) string {
		t.Helper()
		if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	creds := filepath.Dir(write(filepath.Join(dir, "creds", TokenCredential), " from-cred\n"))
	emptyCreds := filepath.Dir(write(filepath.Join(dir, "empty-creds", TokenCredential), "\n"))
	noCreds := filepath.Join(dir, "no-creds") // the directory without the credential
	if err := os.Mkdir(noCreds, 0o700); err != nil {
		t.Fatal(err)
	}
	unreadable := filepath.Join(dir, "dir-creds")
	if err := os.MkdirAll(filepath.Join(unreadable, TokenCredential), 0o700); err != nil { // a directory: read fails
		t.Fatal(err)
	}
	file := write(filepath.Join(dir, "token"), "from-file\n")
	emptyFile := write(filepath.Join(dir, "empty"), "  \n")
	missing := filepath.Join(dir, "missing")

	for _, tc := range []struct {
		name    string
		o       Options
		want    Token
		wantErr error // errAny: any error
	}{
		{"nothing", Options{}, Token{Source: FromNone}, nil},
		{"token", Options{Token: "inline"}, Token{Value: "inline", Source: FromToken}, nil},
		{"token file wins over token", Options{Token: "inline", TokenFile: file}, Token{Value: "from-file", Source: FromTokenFile}, nil},
		{"credential wins over both", Options{Token: "inline", TokenFile: file, CredentialsDir: creds}, Token{Value: "from-cred", Source: FromCredential}, nil},
		{"credential wins over an unreadable token file", Options{TokenFile: missing, CredentialsDir: creds}, Token{Value: "from-cred", Source: FromCredential}, nil},
		{"credential alone", Options{CredentialsDir: creds}, Token{Value: "from-cred", Source: FromCredential}, nil},
		{"empty credential: token file", Options{TokenFile: file, CredentialsDir: emptyCreds}, Token{Value: "from-file", Source: FromTokenFile, EmptyCredential: true}, nil},
		{"empty credential: token", Options{Token: "inline", CredentialsDir: emptyCreds}, Token{Value: "inline", Source: FromToken, EmptyCredential: true}, nil},
		{"empty credential: no token", Options{CredentialsDir: emptyCreds}, Token{Source: FromNone, EmptyCredential: true}, nil},
		{"no credential in the directory", Options{Token: "inline", CredentialsDir: noCreds}, Token{Value: "inline", Source: FromToken}, nil},
		{"credentials directory gone", Options{Token: "inline", CredentialsDir: missing}, Token{Value: "inline", Source: FromToken}, nil},
		{"unreadable credential", Options{Token: "inline", CredentialsDir: unreadable}, Token{}, errAny},
		{"missing token file", Options{TokenFile: missing}, Token{}, os.ErrNotExist},
		{"empty token file", Options{TokenFile: emptyFile, Token: "inline"}, Token{}, ErrConfig},
		{"empty credential, empty token file", Options{TokenFile: emptyFile, CredentialsDir: emptyCreds}, Token{}, ErrConfig},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ResolveToken(tc.o)
			switch {
			case tc.wantErr == errAny && err != nil:
			case tc.wantErr != nil && errors.Is(err, tc.wantErr):
			case tc.wantErr == nil && err == nil && got == tc.want:
			default:
				t.Errorf("ResolveToken(%+v) = %+v, %v; want %+v, %v", tc.o, got, err, tc.want, tc.wantErr)
			}
		})
	}
}

var errAny = errors.New("any error")
