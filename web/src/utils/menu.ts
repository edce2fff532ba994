// What each role sees in the menu and may open. The services enforce every permission on the
// server (services/auth/ecowatt_auth/authz/matrix.py); this only keeps people away from pages
// whose every request would be refused.

export type Role =
  | 'admin'
  | 'city_supervisor'
  | 'district_officer'
  | 'enterprise_user'
  | 'om_operator'
  | 'auditor'
  | 'partner'

export const BUREAU: Role[] = ['admin', 'city_supervisor', 'district_officer']
const BUSINESS: Role[] = ['admin', 'city_supervisor', 'district_officer', 'om_operator', 'auditor']
/** Every person with an account (the matrix's PEOPLE): the ops desk filters by scope. */
const PEOPLE: Role[] = ['admin', 'city_supervisor', 'district_officer', 'enterprise_user', 'om_operator', 'auditor']

export interface MenuItem {
  /** Route name, also the i18n key `menu.<name>`. */
  name: string
  path: string
  icon: string
  roles: Role[]
  /** A sub-menu: the O&M desk (运维服务台) or administration. */
  group?: 'desk' | 'admin'
}

export const MENU: MenuItem[] = [
  { name: 'overview', path: '/overview', icon: 'MapLocation', roles: BUSINESS },
  { name: 'myEnterprise', path: '/my-enterprise', icon: 'OfficeBuilding', roles: ['enterprise_user'] },
  { name: 'enterprises', path: '/enterprises', icon: 'OfficeBuilding', roles: BUSINESS },
  {
    name: 'alarms',
    path: '/alarms',
    icon: 'Bell',
    roles: [...BUSINESS, 'enterprise_user'],
  },
  {
    name: 'filings',
    path: '/filings',
    icon: 'Calendar',
    roles: ['admin', 'city_supervisor', 'district_officer', 'enterprise_user', 'om_operator'],
  },
  {
    name: 'quality',
    path: '/quality',
    icon: 'DataAnalysis',
    roles: ['admin', 'city_supervisor', 'district_officer', 'om_operator', 'enterprise_user'],
  },
  { name: 'devices', path: '/devices', icon: 'Cpu', roles: ['admin', 'city_supervisor', 'district_officer', 'om_operator'] },
  {
    name: 'plans',
    path: '/plans',
    icon: 'Warning',
    roles: ['admin', 'city_supervisor', 'district_officer', 'enterprise_user', 'om_operator'],
  },
  {
    name: 'reports',
    path: '/reports',
    icon: 'Document',
    roles: ['admin', 'city_supervisor', 'district_officer', 'enterprise_user', 'om_operator'],
  },
  // The O&M desk (docs/ops-desk.md): incidents and their report are read by bureau, O&M and
  // auditors (OPS_READERS); requests and the knowledge base by every person, scoped.
  { name: 'incidents', path: '/desk/incidents', icon: 'FirstAidKit', roles: BUSINESS, group: 'desk' },
  { name: 'requests', path: '/desk/requests', icon: 'Headset', roles: PEOPLE, group: 'desk' },
  { name: 'knowledge', path: '/desk/kb', icon: 'Reading', roles: PEOPLE, group: 'desk' },
  { name: 'abnormal', path: '/desk/abnormal-events', icon: 'DocumentChecked', roles: BUSINESS, group: 'desk' },
  // Duty contacts and the notification log: city and O&M (OPS_EDITORS); the calendar's
  // overrides are the city's (the page shows them read-only to O&M).
  { name: 'duty', path: '/desk/duty', icon: 'Phone', roles: ['admin', 'city_supervisor', 'om_operator'], group: 'desk' },
  { name: 'users', path: '/admin/users', icon: 'User', roles: ['admin'], group: 'admin' },
  { name: 'apiKeys', path: '/admin/api-keys', icon: 'Key', roles: ['admin'], group: 'admin' },
  { name: 'audit', path: '/admin/audit', icon: 'Tickets', roles: ['admin', 'auditor'], group: 'admin' },
  { name: 'security', path: '/admin/security', icon: 'Lock', roles: ['admin', 'auditor'], group: 'admin' },
  {
    name: 'rules',
    path: '/admin/rules',
    icon: 'SetUp',
    roles: ['admin', 'city_supervisor', 'district_officer', 'om_operator'],
    group: 'admin',
  },
  {
    name: 'status',
    path: '/admin/status',
    icon: 'Monitor',
    roles: ['admin', 'city_supervisor', 'om_operator'],
    group: 'admin',
  },
]

export function menuFor(role: Role | null | undefined): MenuItem[] {
  if (!role) return []
  return MENU.filter((item) => item.roles.includes(role))
}

export function mayOpen(role: Role | null | undefined, routeName: string): boolean {
  const item = MENU.find((entry) => entry.name === routeName)
  return item === undefined || (role != null && item.roles.includes(role))
}

/** Where a person lands after logging in. */
export function homeOf(role: Role | null | undefined): string {
  if (role === 'enterprise_user') return '/my-enterprise'
  if (role === 'auditor') return '/admin/audit'
  return '/overview'
}

/** Alarm actions a role may take (the alarm service checks again, with the alarm's district). */
export function alarmActions(role: Role | null | undefined, status: string): string[] {
  if (!role || status === 'closed') return role ? ['comment'] : []
  const actions: string[] = []
  if ((role === 'admin' || role === 'city_supervisor') && ['open', 'dispatched'].includes(status))
    actions.push('dispatch')
  if ((role === 'enterprise_user' || role === 'om_operator' || role === 'admin') && status !== 'verified')
    actions.push('feedback')
  if (BUREAU.includes(role) && status !== 'verified') actions.push('verify')
  if (BUREAU.includes(role) && (status === 'verified' || status === 'suppressed')) actions.push('close')
  actions.push('comment')
  return actions
}
