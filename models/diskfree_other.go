//go:build !unix

package models

func diskFree(dir string) (uint64, bool) { return 0, false }
