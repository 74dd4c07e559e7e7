package server

import (
	"context"
	"fmt"
	"slices"
)

// PartOfLister is offered by a Systemd that can say which units a unit is
// PartOf= (DBus does, the tests' fake too).
type PartOfLister interface {
	PartOf(ctx context.Context, unit string) ([]string, error)
}

// PartOf lists the units unit is PartOf=.
func (d *DBus) PartOf(ctx context.Context, unit string) ([]string, error) {
	p, err := d.c.GetUnitPropertyContext(ctx, unit, "PartOf")
	if err != nil {
		return nil, fmt.Errorf("initfailover: what %s is part of: %w", unit, err)
	}
	w, _ := p.Value.Value().([]string)
	return w, nil
}

// Unbound returns the init units (what target wants, then services) that
// are not PartOf target: systemd does not stop them when initfailover
// dies (the target BindsTo initfailover), so they run on until
// initfailover restarts and kills them, while another node may already
// have started them. Nil when sd cannot tell.
func Unbound(ctx context.Context, sd Units, target string, services []string) ([]string, error) {
	pl, ok := sd.(PartOfLister)
	if !ok {
		return nil, nil
	}
	wants, err := sd.Wants(ctx, target)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, u := range append(wants, services...) {
		if u == target || slices.Contains(out, u) {
			continue
		}
		of, err := pl.PartOf(ctx, u)
		if err != nil {
			return out, err
		}
		if !slices.Contains(of, target) {
			out = append(out, u)
		}
	}
	return out, nil
}
