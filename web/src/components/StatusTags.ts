// Colours of statuses and levels, shared by the lists and detail pages.
export function alarmStatusType(status: string): 'danger' | 'warning' | 'success' | 'info' | 'primary' {
  switch (status) {
    case 'open':
      return 'danger'
    case 'dispatched':
      return 'warning'
    case 'replied':
      return 'primary'
    case 'verified':
      return 'success'
    default:
      return 'info'
  }
}

export function levelType(level: number): 'danger' | 'warning' | 'info' {
  return level >= 3 ? 'danger' : level === 2 ? 'warning' : 'info'
}

export function facilityStateType(state: string | null | undefined): 'success' | 'warning' | 'danger' | 'info' {
  switch (state) {
    case 'running':
      return 'success'
    case 'low_load':
    case 'standby':
      return 'warning'
    case 'offline':
    case 'power_loss':
      return 'danger'
    default:
      return 'info'
  }
}

/** O&M desk: incident levels (非常严重 … 一般). */
export function incidentLevelType(level: string): 'danger' | 'warning' | 'primary' | 'info' {
  return level === 'critical' ? 'danger' : level === 'major' ? 'warning' : level === 'moderate' ? 'primary' : 'info'
}

export function incidentStatusType(status: string): 'danger' | 'warning' | 'success' | 'info' | 'primary' {
  switch (status) {
    case 'open':
      return 'danger'
    case 'responded':
    case 'mitigated':
      return 'warning'
    case 'resolved':
      return 'primary'
    case 'verified':
      return 'success'
    default:
      return 'info'
  }
}

export function requestStatusType(status: string): 'danger' | 'warning' | 'success' | 'info' | 'primary' {
  switch (status) {
    case 'submitted':
      return 'danger'
    case 'accepted':
      return 'warning'
    case 'answered':
    case 'resolved':
      return 'primary'
    case 'closed':
      return 'success'
    default:
      return 'info'
  }
}
