// A story told in steps that build on each other, for node:test: once one
// step fails, the later ones skip, naming it, rather than fail as noise.

import { it } from 'node:test';

/** A `step(name, body)` that declares a test as `it` does; call it once per
 * story, inside its `describe`. */
export function storySteps() {
  let failedStep = null;
  return (name, body) =>
    it(name, async (t) => {
      if (failedStep) return t.skip(`an earlier step failed (${failedStep})`);
      try {
        await body();
      } catch (error) {
        failedStep = name;
        throw error;
      }
    });
}
