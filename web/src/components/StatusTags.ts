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
