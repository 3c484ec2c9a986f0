package fakeamocrm

import (
	"fmt"
	"time"
)

// tzOffset formats the UTC offset of zone at t as "+03:00"; "+00:00" when the
// zone is unknown to this machine.
func tzOffset(zone string, t time.Time) string {
	loc, err := time.LoadLocation(zone)
	if err != nil {
		return "+00:00"
	}
	_, off := t.In(loc).Zone()
	sign := '+'
	if off < 0 {
		sign, off = '-', -off
	}
	return fmt.Sprintf("%c%02d:%02d", sign, off/3600, off%3600/60)
}
