package postgres

import "crypto/rand"

// GeneratePassword returns a new random password of 130 bits from
// crypto/rand, in base32 so it can sit in a connection URI unescaped.
func GeneratePassword() string { return rand.Text() }
