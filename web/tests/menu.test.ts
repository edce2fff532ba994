import { describe, expect, it } from 'vitest'
import { alarmActions, homeOf, mayOpen, menuFor, MENU } from '../src/utils/menu'

const names = (role: Parameters<typeof menuFor>[0]) => menuFor(role).map((item) => item.name)

describe('the menu follows the permission matrix', () => {
  it('gives administrators every page', () => {
    expect(names('admin')).toEqual(MENU.filter((i) => i.name !== 'myEnterprise').map((i) => i.name))
  })

  it('gives an enterprise user their own enterprise, alarms, filings and no administration', () => {
    const menu = names('enterprise_user')
    expect(menu).toContain('myEnterprise')
    expect(menu).toContain('alarms')
    expect(menu).toContain('filings')
    expect(menu).not.toContain('overview')
    expect(menu).not.toContain('devices')
    expect(menu.some((n) => ['users', 'apiKeys', 'audit', 'security', 'status'].includes(n))).toBe(false)
  })

  it('keeps account and key administration to administrators, the audit log to them and auditors', () => {
    for (const role of ['city_supervisor', 'district_officer', 'om_operator', 'enterprise_user'] as const) {
      expect(names(role)).not.toContain('users')
      expect(names(role)).not.toContain('apiKeys')
      expect(names(role)).not.toContain('audit')
    }
    expect(names('auditor')).toEqual(expect.arrayContaining(['audit', 'security']))
  })

  it('shows the system status to those the ops API answers', () => {
    expect(names('city_supervisor')).toContain('status')
    expect(names('om_operator')).toContain('status')
    expect(names('district_officer')).not.toContain('status')
  })

  it('refuses routes not in the role menu and lets unlisted routes through', () => {
    expect(mayOpen('district_officer', 'users')).toBe(false)
    expect(mayOpen('admin', 'users')).toBe(true)
    expect(mayOpen(null, 'overview')).toBe(false)
    expect(mayOpen('enterprise_user', 'alarm')).toBe(true) // detail pages: the API decides
  })

  it('lands each role on its home page', () => {
    expect(homeOf('enterprise_user')).toBe('/my-enterprise')
    expect(homeOf('auditor')).toBe('/admin/audit')
    expect(homeOf('city_supervisor')).toBe('/overview')
  })
})

describe('alarm actions by role and status (DESIGN §1: dispatch, feedback, verify, close)', () => {
  it('lets the city supervisor dispatch an open alarm but not answer it', () => {
    const actions = alarmActions('city_supervisor', 'open')
    expect(actions).toContain('dispatch')
    expect(actions).toContain('verify')
    expect(actions).not.toContain('feedback')
    expect(actions).not.toContain('close')
  })

  it('lets the enterprise answer but never verify, close or dispatch', () => {
    const actions = alarmActions('enterprise_user', 'dispatched')
    expect(actions).toEqual(['feedback', 'comment'])
  })

  it('offers closing only after verification (核查后销号)', () => {
    expect(alarmActions('district_officer', 'replied')).not.toContain('close')
    expect(alarmActions('district_officer', 'verified')).toContain('close')
    expect(alarmActions('city_supervisor', 'suppressed')).toContain('close')
  })

  it('leaves only comments on a closed alarm', () => {
    expect(alarmActions('city_supervisor', 'closed')).toEqual(['comment'])
    expect(alarmActions(null, 'open')).toEqual([])
  })
})
