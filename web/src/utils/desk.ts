// The O&M desk (docs/ops-desk.md) in the browser: SLA clocks as people read them, and the
// workflow steps each role may take. The ops service checks every step again (roles from
// services/auth/ecowatt_auth/authz/matrix.py, statuses from its workflow); this only keeps
// buttons away from people whose click would be refused.
import { formatDuration } from './format'
import type { Role } from './menu'

type Locale = 'zh-CN' | 'en'

export type ClockStatus = 'running' | 'overdue' | 'met' | 'missed' | 'stopped'

/** One SLA clock as the ops API answers it (`ClockState`). */
export interface Clock {
  due_at: string
  warn_at?: string | null
  stopped_at?: string | null
  status: ClockStatus
  remaining_s?: number | null
}

export type ClockTone = 'success' | 'warning' | 'danger' | 'info'

export interface ClockView {
  /** As of `now`: a running clock past its deadline is overdue even if the page is older. */
  status: ClockStatus
  tone: ClockTone
  /** Minutes left (running), over (overdue), or late (missed); null otherwise. */
  minutes: number | null
}

const time = (value: string | null | undefined) => (value ? new Date(value).getTime() : Number.NaN)

/**
 * A clock as of `now`. A stopped clock keeps the server's verdict (met, missed, stopped); a
 * running one counts down to its deadline in the browser, turns amber once the escalation
 * warning time (`warn_at`) has passed and red when the deadline has.
 */
export function clockView(clock: Clock, now: Date = new Date()): ClockView {
  const due = time(clock.due_at)
  if (clock.status === 'met') return { status: 'met', tone: 'success', minutes: null }
  if (clock.status === 'stopped') return { status: 'stopped', tone: 'info', minutes: null }
  if (clock.status === 'missed') {
    const late = (time(clock.stopped_at) - due) / 60000
    return { status: 'missed', tone: 'danger', minutes: Number.isNaN(late) ? null : Math.max(1, Math.ceil(late)) }
  }
  const left = (due - now.getTime()) / 60000
  if (Number.isNaN(left)) return { status: clock.status, tone: 'info', minutes: null }
  if (left <= 0) return { status: 'overdue', tone: 'danger', minutes: Math.max(1, Math.ceil(-left)) }
  const warned = clock.warn_at != null && now.getTime() >= time(clock.warn_at)
  return { status: 'running', tone: warned ? 'warning' : 'success', minutes: Math.max(1, Math.ceil(left)) }
}

/** `剩余 25 分钟`, `已超时 1 小时 5 分`, `达标`, `超时 3 分钟` (or English); `—` when stopped. */
export function formatClock(clock: Clock | null | undefined, now: Date = new Date(), locale: Locale = 'zh-CN'): string {
  if (!clock) return '—'
  const view = clockView(clock, now)
  const span = view.minutes === null ? '' : formatDuration(view.minutes, locale)
  if (locale === 'en') {
    switch (view.status) {
      case 'running':
        return `${span} left`
      case 'overdue':
        return `overdue by ${span}`
      case 'met':
        return 'met'
      case 'missed':
        return span ? `missed by ${span}` : 'missed'
      default:
        return '—'
    }
  }
  switch (view.status) {
    case 'running':
      return `剩余 ${span}`
    case 'overdue':
      return `已超时 ${span}`
    case 'met':
      return '达标'
    case 'missed':
      return span ? `超时 ${span}` : '超时'
    default:
      return '—'
  }
}

// Who may do what (the `/api/ops/...` rows of the permission matrix).
const OPERATORS: Role[] = ['admin', 'om_operator']
const VERIFIERS: Role[] = ['admin', 'city_supervisor']
const EDITORS: Role[] = ['admin', 'city_supervisor', 'om_operator']
const REPORTERS: Role[] = ['admin', 'city_supervisor', 'district_officer', 'om_operator']
const REQUESTERS: Role[] = ['admin', 'city_supervisor', 'district_officer', 'enterprise_user', 'om_operator']

const has = (group: Role[], role: Role | null | undefined) => role != null && group.includes(role)

/** Open an incident by hand: city, district, O&M. */
export const mayOpenIncident = (role: Role | null | undefined) => has(REPORTERS, role)
/** Raise a support request: everyone but auditors. */
export const mayRaiseRequest = (role: Role | null | undefined) => has(REQUESTERS, role)
/** Write and edit knowledge-base articles, link them to cases, file reports: city and O&M. */
export const mayEditKnowledge = (role: Role | null | undefined) => has(EDITORS, role)
export const mayFileReport = mayEditKnowledge
/** Staff who work requests (accept, reply, resolve, reject) and incidents. */
export const isOperator = (role: Role | null | undefined) => has(OPERATORS, role)

const ACTIVE = ['open', 'responded', 'mitigated', 'resolved']

/**
 * Incident steps a role may take in a status, in the order the workflow runs:
 * respond → workaround → root cause → resolve → verify (city) → review, reopen, cancel,
 * change (level, assignee), comment.
 */
export function incidentActions(role: Role | null | undefined, status: string): string[] {
  const actions: string[] = []
  const operator = has(OPERATORS, role)
  if (operator && status === 'open') actions.push('respond')
  if (operator && ['open', 'responded'].includes(status)) actions.push('workaround')
  if (operator && ACTIVE.includes(status)) actions.push('root_cause')
  if (operator && ['open', 'responded', 'mitigated'].includes(status)) actions.push('resolve')
  if (has(VERIFIERS, role) && status === 'resolved') actions.push('verify')
  if (operator && ['resolved', 'verified'].includes(status)) actions.push('review')
  if (has(EDITORS, role) && ['resolved', 'verified'].includes(status)) actions.push('reopen')
  if (operator && ['open', 'responded', 'mitigated'].includes(status)) actions.push('cancel')
  if (operator && ACTIVE.includes(status)) actions.push('change')
  if (has(REPORTERS, role)) actions.push('comment')
  return actions
}

/**
 * Support-request steps a role may take in a status. O&M accepts (or hands over), replies,
 * resolves, rejects; the requester's side closes, reopens and comments; only the requester
 * (or an administrator) withdraws.
 */
export function requestActions(role: Role | null | undefined, status: string, mine: boolean): string[] {
  const actions: string[] = []
  const operator = has(OPERATORS, role)
  const requester = has(REQUESTERS, role)
  if (operator && ['submitted', 'accepted'].includes(status)) actions.push('accept')
  if (operator && ['submitted', 'accepted', 'answered'].includes(status)) actions.push('reply', 'resolve')
  if (operator && ['submitted', 'accepted'].includes(status)) actions.push('reject')
  if (requester && ['answered', 'resolved'].includes(status)) actions.push('close')
  if (requester && ['answered', 'resolved', 'closed'].includes(status)) actions.push('reopen')
  if (requester && (mine || role === 'admin') && ['submitted', 'accepted', 'answered'].includes(status))
    actions.push('withdraw')
  if (requester && status !== 'withdrawn') actions.push('comment')
  return actions
}

/** Steps that need a text (a reason, an answer, a note); the others send none or may. */
export const NEEDS_TEXT = new Set(['workaround', 'root_cause', 'resolve', 'reopen', 'cancel', 'comment', 'review', 'reply', 'reject'])
