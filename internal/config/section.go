package config

import "github.com/openssi/openssi/internal/settings"

// Section is one daemon's section of the file; see [settings.Section].
type Section = settings.Section

// Flag is a daemon's own command-line flag; see [settings.Flag].
type Flag = settings.Flag

// Error reports one setting whose value is not allowed; see
// [settings.Error].
type Error = settings.Error

// ErrInvalid is matched (errors.Is) by every [*Error].
var ErrInvalid = settings.ErrInvalid
