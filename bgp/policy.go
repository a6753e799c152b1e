package bgp

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"

	api "github.com/osrg/gobgp/v4/api"
	"github.com/osrg/gobgp/v4/pkg/config/oc"
	bgppkt "github.com/osrg/gobgp/v4/pkg/packet/bgp"
)

// GoBGP keeps its own config → API conversion of policies in an internal
// package, so this file holds ours: the same mapping gobgpd applies when it
// reads policy-definitions from its config file.

// apiPolicies converts the defined sets and policy definitions of a config.
func apiPolicies(c *oc.BgpConfigSet) ([]*api.DefinedSet, []*api.Policy, error) {
	sets, err := oc.NewAPIDefinedSetsFromConfigStruct(&c.DefinedSets)
	if err != nil {
		return nil, nil, fmt.Errorf("defined-sets: %w", err)
	}
	policies := make([]*api.Policy, 0, len(c.PolicyDefinitions))
	for i := range c.PolicyDefinitions {
		p, err := apiPolicy(&c.PolicyDefinitions[i])
		if err != nil {
			return nil, nil, err
		}
		policies = append(policies, p)
	}
	return sets, policies, nil
}

func apiPolicy(p *oc.PolicyDefinition) (*api.Policy, error) {
	out := &api.Policy{Name: p.Name}
	for i := range p.Statements {
		st, err := apiStatement(&p.Statements[i])
		if err != nil {
			return nil, fmt.Errorf("policy %s statement %s: %w", p.Name, p.Statements[i].Name, err)
		}
		out.Statements = append(out.Statements, st)
	}
	return out, nil
}

func matchSetType(o string) (api.MatchSet_Type, error) {
	switch strings.ToLower(o) {
	case "", "any":
		return api.MatchSet_TYPE_ANY, nil
	case "all":
		return api.MatchSet_TYPE_ALL, nil
	case "invert":
		return api.MatchSet_TYPE_INVERT, nil
	}
	return 0, fmt.Errorf("match-set-options %q: want any, all or invert", o)
}

func matchSet(name, option string, allowAll bool) (*api.MatchSet, error) {
	if name == "" {
		return nil, nil
	}
	t, err := matchSetType(option)
	if err != nil {
		return nil, err
	}
	if t == api.MatchSet_TYPE_ALL && !allowAll {
		return nil, fmt.Errorf("match-set-options %q: want any or invert", option)
	}
	return &api.MatchSet{Type: t, Name: name}, nil
}

func comparison(op oc.AttributeComparison) (api.Comparison, error) {
	switch op {
	case oc.ATTRIBUTE_COMPARISON_ATTRIBUTE_EQ, oc.ATTRIBUTE_COMPARISON_EQ:
		return api.Comparison_COMPARISON_EQ, nil
	case oc.ATTRIBUTE_COMPARISON_ATTRIBUTE_GE, oc.ATTRIBUTE_COMPARISON_GE:
		return api.Comparison_COMPARISON_GE, nil
	case oc.ATTRIBUTE_COMPARISON_ATTRIBUTE_LE, oc.ATTRIBUTE_COMPARISON_LE:
		return api.Comparison_COMPARISON_LE, nil
	}
	return 0, fmt.Errorf("operator %q: want eq, ge or le", op)
}

func origin(o oc.BgpOriginAttrType) (api.OriginType, bool, error) {
	switch strings.ToLower(string(o)) {
	case "":
		return 0, false, nil
	case string(oc.BGP_ORIGIN_ATTR_TYPE_IGP):
		return api.OriginType_ORIGIN_TYPE_IGP, true, nil
	case string(oc.BGP_ORIGIN_ATTR_TYPE_EGP):
		return api.OriginType_ORIGIN_TYPE_EGP, true, nil
	case string(oc.BGP_ORIGIN_ATTR_TYPE_INCOMPLETE):
		return api.OriginType_ORIGIN_TYPE_INCOMPLETE, true, nil
	}
	return 0, false, fmt.Errorf("origin %q: want igp, egp or incomplete", o)
}

func communityAction(o string) (api.CommunityAction_Type, error) {
	switch strings.ToLower(o) {
	case "add":
		return api.CommunityAction_TYPE_ADD, nil
	case "remove":
		return api.CommunityAction_TYPE_REMOVE, nil
	case "replace":
		return api.CommunityAction_TYPE_REPLACE, nil
	}
	return 0, fmt.Errorf("options %q: want add, remove or replace", o)
}

var medRE = regexp.MustCompile(`^([+-]?)(\d+)$`)

func apiStatement(s *oc.Statement) (*api.Statement, error) {
	c := &s.Conditions
	bc := &c.BgpConditions
	cs := &api.Conditions{}
	var err error
	if cs.PrefixSet, err = matchSet(c.MatchPrefixSet.PrefixSet, string(c.MatchPrefixSet.MatchSetOptions), false); err != nil {
		return nil, fmt.Errorf("match-prefix-set: %w", err)
	}
	if cs.NeighborSet, err = matchSet(c.MatchNeighborSet.NeighborSet, string(c.MatchNeighborSet.MatchSetOptions), false); err != nil {
		return nil, fmt.Errorf("match-neighbor-set: %w", err)
	}
	if cs.AsPathSet, err = matchSet(bc.MatchAsPathSet.AsPathSet, string(bc.MatchAsPathSet.MatchSetOptions), true); err != nil {
		return nil, fmt.Errorf("match-as-path-set: %w", err)
	}
	if cs.CommunitySet, err = matchSet(bc.MatchCommunitySet.CommunitySet, string(bc.MatchCommunitySet.MatchSetOptions), true); err != nil {
		return nil, fmt.Errorf("match-community-set: %w", err)
	}
	if cs.ExtCommunitySet, err = matchSet(bc.MatchExtCommunitySet.ExtCommunitySet, string(bc.MatchExtCommunitySet.MatchSetOptions), true); err != nil {
		return nil, fmt.Errorf("match-ext-community-set: %w", err)
	}
	if cs.LargeCommunitySet, err = matchSet(bc.MatchLargeCommunitySet.LargeCommunitySet, string(bc.MatchLargeCommunitySet.MatchSetOptions), true); err != nil {
		return nil, fmt.Errorf("match-large-community-set: %w", err)
	}
	if bc.CommunityCount.Operator != "" {
		t, err := comparison(bc.CommunityCount.Operator)
		if err != nil {
			return nil, fmt.Errorf("community-count: %w", err)
		}
		cs.CommunityCount = &api.CommunityCount{Type: t, Count: bc.CommunityCount.Value}
	}
	if bc.AsPathLength.Operator != "" {
		t, err := comparison(bc.AsPathLength.Operator)
		if err != nil {
			return nil, fmt.Errorf("as-path-length: %w", err)
		}
		cs.AsPathLength = &api.AsPathLength{Type: t, Length: bc.AsPathLength.Value}
	}
	if o, ok, err := origin(bc.OriginEq); err != nil {
		return nil, fmt.Errorf("origin-eq: %w", err)
	} else if ok {
		cs.Origin = o
	}
	if bc.RouteType != "" {
		i := bc.RouteType.ToInt()
		if i < 0 {
			return nil, fmt.Errorf("route-type %q: want none, internal, external or local", bc.RouteType)
		}
		cs.RouteType = api.Conditions_RouteType(i)
	}
	for _, nh := range bc.NextHopInList {
		cs.NextHopInList = append(cs.NextHopInList, nh.String())
	}
	for _, f := range bc.AfiSafiInList {
		fam, ok := bgppkt.AddressFamilyValueMap[string(f)]
		if !ok {
			return nil, fmt.Errorf("afi-safi-in-list: unknown family %q", f)
		}
		cs.AfiSafiIn = append(cs.AfiSafiIn, &api.Family{Afi: api.Family_Afi(fam.Afi()), Safi: api.Family_Safi(fam.Safi())})
	}
	if bc.LocalPrefEq != 0 {
		cs.LocalPrefEq = &api.LocalPrefEq{Value: bc.LocalPrefEq}
	}
	if bc.MedEq != 0 {
		cs.MedEq = &api.MedEq{Value: bc.MedEq}
	}
	switch strings.ToLower(string(bc.RpkiValidationResult)) {
	case "":
	case string(oc.RPKI_VALIDATION_RESULT_TYPE_NONE):
		cs.RpkiResult = api.ValidationState_VALIDATION_STATE_NONE
	case string(oc.RPKI_VALIDATION_RESULT_TYPE_NOT_FOUND):
		cs.RpkiResult = api.ValidationState_VALIDATION_STATE_NOT_FOUND
	case string(oc.RPKI_VALIDATION_RESULT_TYPE_VALID):
		cs.RpkiResult = api.ValidationState_VALIDATION_STATE_VALID
	case string(oc.RPKI_VALIDATION_RESULT_TYPE_INVALID):
		cs.RpkiResult = api.ValidationState_VALIDATION_STATE_INVALID
	default:
		return nil, fmt.Errorf("rpki-validation-result %q: want none, not-found, valid or invalid", bc.RpkiValidationResult)
	}

	a := &s.Actions
	ba := &a.BgpActions
	as := &api.Actions{}
	switch strings.ToLower(string(a.RouteDisposition)) {
	case "", string(oc.ROUTE_DISPOSITION_NONE):
	case string(oc.ROUTE_DISPOSITION_ACCEPT_ROUTE):
		as.RouteAction = api.RouteAction_ROUTE_ACTION_ACCEPT
	case string(oc.ROUTE_DISPOSITION_REJECT_ROUTE):
		as.RouteAction = api.RouteAction_ROUTE_ACTION_REJECT
	default:
		return nil, fmt.Errorf("route-disposition %q: want accept-route or reject-route", a.RouteDisposition)
	}
	if l := ba.SetCommunity.SetCommunityMethod.CommunitiesList; len(l) > 0 {
		t, err := communityAction(ba.SetCommunity.Options)
		if err != nil {
			return nil, fmt.Errorf("set-community: %w", err)
		}
		as.Community = &api.CommunityAction{Type: t, Communities: l}
	}
	if l := ba.SetExtCommunity.SetExtCommunityMethod.CommunitiesList; len(l) > 0 {
		t, err := communityAction(ba.SetExtCommunity.Options)
		if err != nil {
			return nil, fmt.Errorf("set-ext-community: %w", err)
		}
		as.ExtCommunity = &api.CommunityAction{Type: t, Communities: l}
	}
	if l := ba.SetLargeCommunity.SetLargeCommunityMethod.CommunitiesList; len(l) > 0 {
		t, err := communityAction(string(ba.SetLargeCommunity.Options))
		if err != nil {
			return nil, fmt.Errorf("set-large-community: %w", err)
		}
		as.LargeCommunity = &api.CommunityAction{Type: t, Communities: l}
	}
	if med := strings.TrimSpace(string(ba.SetMed)); med != "" {
		m := medRE.FindStringSubmatch(med)
		if m == nil {
			return nil, fmt.Errorf("set-med %q: want N, +N or -N", med)
		}
		v, err := strconv.ParseInt(m[1]+m[2], 10, 64)
		if err != nil || v > 1<<32-1 || v < -(1<<32-1) {
			return nil, fmt.Errorf("set-med %q: out of range", med)
		}
		t := api.MedAction_TYPE_REPLACE
		if m[1] != "" {
			t = api.MedAction_TYPE_MOD
		}
		as.Med = &api.MedAction{Type: t, Value: v}
	}
	if p := ba.SetAsPathPrepend; p.As != "" {
		act := &api.AsPrependAction{Repeat: uint32(p.RepeatN)}
		if p.As == "last-as" {
			act.UseLeftMost = true
		} else {
			n, err := strconv.ParseUint(p.As, 10, 32)
			if err != nil || n == 0 {
				return nil, fmt.Errorf("set-as-path-prepend: as %q: want an AS number or last-as", p.As)
			}
			act.Asn = uint32(n)
		}
		as.AsPrepend = act
	}
	if nh := string(ba.SetNextHop); nh != "" {
		switch strings.ToLower(nh) {
		case "self":
			as.Nexthop = &api.NexthopAction{Self: true}
		case "peer-address":
			as.Nexthop = &api.NexthopAction{PeerAddress: true}
		case "unchanged":
			as.Nexthop = &api.NexthopAction{Unchanged: true}
		default:
			if !isIP(nh) {
				return nil, fmt.Errorf("set-next-hop %q: want an address, self, peer-address or unchanged", nh)
			}
			as.Nexthop = &api.NexthopAction{Address: nh}
		}
	}
	if ba.SetLocalPref != 0 {
		as.LocalPref = &api.LocalPrefAction{Value: ba.SetLocalPref}
	}
	if o, ok, err := origin(ba.SetRouteOrigin); err != nil {
		return nil, fmt.Errorf("set-route-origin: %w", err)
	} else if ok {
		as.OriginAction = &api.OriginAction{Origin: o}
	}
	return &api.Statement{Name: s.Name, Conditions: cs, Actions: as}, nil
}

// apiAssignment is the policy assignment of one direction.
func apiAssignment(name string, dir api.PolicyDirection, policies []string, def oc.DefaultPolicyType) *api.PolicyAssignment {
	a := &api.PolicyAssignment{Name: name, Direction: dir, DefaultAction: api.RouteAction_ROUTE_ACTION_ACCEPT}
	if def == oc.DEFAULT_POLICY_TYPE_REJECT_ROUTE {
		a.DefaultAction = api.RouteAction_ROUTE_ACTION_REJECT
	}
	for _, p := range policies {
		a.Policies = append(a.Policies, &api.Policy{Name: p})
	}
	return a
}
