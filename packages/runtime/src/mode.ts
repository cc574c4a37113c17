import { runtimeErrors } from './errors.ts';

/** Production mode: set by a service's config (`mode: production`) or NODE_ENV=production. */
export function isProduction(configMode: 'production' | 'development' | undefined, env = process.env): boolean {
  return configMode === 'production' || env.NODE_ENV === 'production';
}

/** Throw when a development-only component (local keys, emulators) is used in production. */
export function refuseInProduction(production: boolean, component: string): void {
  if (production) {
    throw runtimeErrors.error(
      'RUNTIME_DEV_BACKEND_IN_PRODUCTION',
      { component },
      {
        message: `${component} is for development only and is refused in production mode.`,
      },
    );
  }
}
